package config

import (
	"testing"
	"time"
)

func TestOr(t *testing.T) {
	if got := Or(0, 7); got != 7 {
		t.Errorf("Or(0, 7) = %d", got)
	}
	if got := Or(-1, 7); got != 7 {
		t.Errorf("Or(-1, 7) = %d", got)
	}
	if got := Or(3*time.Second, time.Minute); got != 3*time.Second {
		t.Errorf("Or(3s, 1m) = %v", got)
	}
}
