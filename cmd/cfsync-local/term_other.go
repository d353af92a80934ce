//go:build !linux

package main

import "os"

// termWidth is the width of the terminal on f (unknown off Linux).
func termWidth(*os.File) int { return 0 }
