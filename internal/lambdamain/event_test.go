package lambdamain

import "testing"

func TestEventFields(t *testing.T) {
	tests := []struct {
		name, payload string
		wantFields    []string
		wantErr       string
	}{
		{name: "empty object", payload: `{}`},
		{name: "scheduled event", payload: ` {"version":"0","source":"aws.events","detail":{}} `, wantFields: []string{"version", "source", "detail"}},
		{name: "empty", payload: " \n", wantErr: "empty payload, want a JSON object"},
		{name: "not JSON", payload: `poll now`, wantErr: "not JSON: invalid JSON at byte 1, want a JSON object"},
		{name: "truncated", payload: `{"full":`, wantErr: "not JSON: invalid JSON at byte 8, want a JSON object"},
		{name: "array", payload: `[1,2]`, wantErr: "want a JSON object, got JSON array"},
		{name: "string", payload: `"refresh"`, wantErr: "want a JSON object, got JSON string"},
		{name: "number", payload: `7`, wantErr: "want a JSON object, got JSON number"},
		{name: "null", payload: `null`, wantErr: "want a JSON object, got null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields, err := EventFields([]byte(tt.payload))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("EventFields(%q) error = %v, want %q", tt.payload, err, tt.wantErr)
				}
				return
			}
			if err != nil || fields == nil || len(fields) != len(tt.wantFields) {
				t.Fatalf("EventFields(%q) = %v, %v; want fields %q", tt.payload, fields, err, tt.wantFields)
			}
			for _, f := range tt.wantFields {
				if _, ok := fields[f]; !ok {
					t.Errorf("field %q missing from %v", f, fields)
				}
			}
		})
	}
}
