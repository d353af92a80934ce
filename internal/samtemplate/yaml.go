package samtemplate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// ParseYAML decodes a CloudFormation/SAM template written in YAML into plain
// JSON-compatible Go values (map[string]any, []any, string, bool, int64,
// float64, nil). CloudFormation's short-form tags become their long forms:
// !Ref X → {"Ref": "X"}, !Condition X → {"Condition": "X"},
// !GetAtt A.B → {"Fn::GetAtt": ["A", "B"]}, and every other !Name → {"Fn::Name": …}.
func ParseYAML(data []byte) (any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse template yaml: %w", err)
	}
	if doc.Kind == 0 { // empty document
		return nil, nil
	}
	return convertNode(&doc)
}

// ToJSON marshals a decoded template as JSON.
func ToJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("marshal template json: %w", err)
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// shortForms maps the tags CloudFormation accepts to the long-form key.
var shortForms = map[string]string{
	"!Ref":          "Ref",
	"!Condition":    "Condition",
	"!GetAtt":       "Fn::GetAtt",
	"!Sub":          "Fn::Sub",
	"!Join":         "Fn::Join",
	"!Select":       "Fn::Select",
	"!Split":        "Fn::Split",
	"!If":           "Fn::If",
	"!Equals":       "Fn::Equals",
	"!Not":          "Fn::Not",
	"!And":          "Fn::And",
	"!Or":           "Fn::Or",
	"!FindInMap":    "Fn::FindInMap",
	"!Base64":       "Fn::Base64",
	"!Cidr":         "Fn::Cidr",
	"!GetAZs":       "Fn::GetAZs",
	"!ImportValue":  "Fn::ImportValue",
	"!Transform":    "Fn::Transform",
	"!ToJsonString": "Fn::ToJsonString",
	"!Length":       "Fn::Length",
	"!ForEach":      "Fn::ForEach",
}

func convertNode(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return convertNode(n.Content[0])
	case yaml.AliasNode:
		return convertNode(n.Alias)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return convertTagged(n)
	}
	return convertPlain(n)
}

func convertTagged(n *yaml.Node) (any, error) {
	key, ok := shortForms[n.Tag]
	if !ok {
		return nil, fmt.Errorf("line %d: unknown CloudFormation tag %s", n.Line, n.Tag)
	}
	// Convert the node as if it had no tag.
	plain := *n
	plain.Tag = ""
	if n.Kind == yaml.ScalarNode {
		plain.Tag = "!!str"
	}
	v, err := convertPlain(&plain)
	if err != nil {
		return nil, err
	}
	if key == "Fn::GetAtt" {
		if s, ok := v.(string); ok {
			res, attr, found := strings.Cut(s, ".")
			if !found {
				return nil, fmt.Errorf("line %d: !GetAtt %q: want Resource.Attribute", n.Line, s)
			}
			v = []any{res, attr}
		}
	}
	return map[string]any{key: v}, nil
}

func convertPlain(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				merged, err := convertNode(v)
				if err != nil {
					return nil, err
				}
				m, ok := merged.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("line %d: merge key needs a mapping", k.Line)
				}
				for mk, mv := range m {
					if _, exists := out[mk]; !exists {
						out[mk] = mv
					}
				}
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: mapping key is not a scalar", k.Line)
			}
			if _, dup := out[k.Value]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q", k.Line, k.Value)
			}
			cv, err := convertNode(v)
			if err != nil {
				return nil, err
			}
			out[k.Value] = cv
		}
		return out, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			cv, err := convertNode(c)
			if err != nil {
				return nil, err
			}
			out = append(out, cv)
		}
		return out, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		switch x := v.(type) {
		case int:
			return int64(x), nil
		case uint64, int64, float64, bool, string, nil:
			return x, nil
		default:
			// Timestamps and binary: keep the text as CloudFormation does.
			return n.Value, nil
		}
	case yaml.AliasNode, yaml.DocumentNode:
		return convertNode(n)
	}
	return nil, fmt.Errorf("line %d: unsupported yaml node kind %v", n.Line, n.Kind)
}
