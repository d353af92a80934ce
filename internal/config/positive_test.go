package config

import (
	"strings"
	"testing"
	"time"
)

func TestRequirePositive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		knobs []Knob
		want  string // "" no error, else the variable the error names
	}{
		{"none", nil, ""},
		{"all positive", []Knob{{"A", 1}, {"B", int64(time.Second)}}, ""},
		{"zero", []Knob{{"A", 1}, {"B", 0}}, "B"},
		{"negative", []Knob{{"A", -1}}, "A"},
		{"first bad named", []Knob{{"A", 0}, {"B", 0}}, "A=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := RequirePositive(tc.knobs...)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}
