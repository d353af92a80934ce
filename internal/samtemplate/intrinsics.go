package samtemplate

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DefaultPseudoParameters are the pseudo parameter values used when the caller
// gives none: moto's account and region, CloudFormation's partition.
var DefaultPseudoParameters = map[string]string{
	"AWS::AccountId": "123456789012",
	"AWS::Region":    "us-east-1",
	"AWS::Partition": "aws",
	"AWS::URLSuffix": "amazonaws.com",
	"AWS::StackName": "cfsync",
	"AWS::StackId":   "arn:aws:cloudformation:us-east-1:123456789012:stack/cfsync/00000000-0000-0000-0000-000000000000",
}

// ParameterValues returns every parameter's value: overrides, else the
// default. Like CloudFormation it rejects unknown names, missing values and
// values outside AllowedValues/AllowedPattern. Pseudo parameters (AWS::…) in
// overrides are kept, and missing ones are taken from DefaultPseudoParameters.
func (t Template) ParameterValues(overrides map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range DefaultPseudoParameters {
		out[k] = v
	}
	declared := map[string]Parameter{}
	for _, p := range t.Parameters() {
		declared[p.Name] = p
	}
	for k, v := range overrides {
		if strings.HasPrefix(k, "AWS::") {
			out[k] = v
			continue
		}
		if _, ok := declared[k]; !ok {
			return nil, fmt.Errorf("parameter %s: not declared by the template", k)
		}
	}
	for _, p := range declared {
		v, ok := overrides[p.Name]
		if !ok {
			if !p.HasDefault {
				return nil, fmt.Errorf("parameter %s: no value and no default", p.Name)
			}
			v = p.Default
		}
		if len(p.AllowedValues) > 0 && !slices.Contains(p.AllowedValues, v) {
			return nil, fmt.Errorf("parameter %s=%q: not one of %v", p.Name, v, p.AllowedValues)
		}
		if p.AllowedPattern != "" {
			re, err := regexp.Compile("^(?:" + p.AllowedPattern + ")$")
			if err != nil {
				return nil, fmt.Errorf("parameter %s: AllowedPattern: %w", p.Name, err)
			}
			if !re.MatchString(v) {
				return nil, fmt.Errorf("parameter %s=%q: does not match %s", p.Name, v, p.AllowedPattern)
			}
		}
		if p.Type == "Number" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return nil, fmt.Errorf("parameter %s=%q: not a number", p.Name, v)
			}
			if p.MinValue != nil && f < *p.MinValue {
				return nil, fmt.Errorf("parameter %s=%q: below MinValue %g", p.Name, v, *p.MinValue)
			}
			if p.MaxValue != nil && f > *p.MaxValue {
				return nil, fmt.Errorf("parameter %s=%q: above MaxValue %g", p.Name, v, *p.MaxValue)
			}
		}
		out[p.Name] = v
	}
	return out, nil
}

// Conditions evaluates the Conditions section with the given parameter values.
func (t Template) Conditions(params map[string]string) (map[string]bool, error) {
	c := &condEval{defs: t.section("Conditions"), done: map[string]bool{}, visiting: map[string]bool{},
		r: &Resolver{Params: params}}
	out := map[string]bool{}
	for _, name := range SortedKeys(c.defs) {
		v, err := c.eval(name)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

// condEval evaluates named conditions once each, refusing cycles.
type condEval struct {
	defs     map[string]any
	done     map[string]bool
	visiting map[string]bool
	r        *Resolver
}

func (c *condEval) eval(name string) (bool, error) {
	if v, ok := c.done[name]; ok {
		return v, nil
	}
	def, ok := c.defs[name]
	if !ok {
		return false, fmt.Errorf("condition %s: not defined", name)
	}
	if c.visiting[name] {
		return false, fmt.Errorf("condition %s: refers to itself", name)
	}
	c.visiting[name] = true
	v, err := c.expr(def)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	c.done[name] = v
	return v, nil
}

func (c *condEval) expr(v any) (bool, error) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false, fmt.Errorf("not a condition function: %v", v)
	}
	for fn, arg := range m {
		args, _ := arg.([]any)
		switch fn {
		case "Condition":
			name, _ := arg.(string)
			return c.eval(name)
		case "Fn::Equals":
			return c.equals(args)
		case "Fn::Not":
			if len(args) != 1 {
				return false, fmt.Errorf("Fn::Not wants 1 argument")
			}
			v, err := c.expr(args[0])
			return !v, err
		case "Fn::And", "Fn::Or":
			return c.andOr(fn, args)
		default:
			return false, fmt.Errorf("unsupported condition function %s", fn)
		}
	}
	panic("unreachable")
}

func (c *condEval) equals(args []any) (bool, error) {
	if len(args) != 2 {
		return false, fmt.Errorf("Fn::Equals wants 2 arguments")
	}
	a, err := c.r.Resolve(args[0])
	if err != nil {
		return false, err
	}
	b, err := c.r.Resolve(args[1])
	if err != nil {
		return false, err
	}
	return scalarString(a) == scalarString(b), nil
}

// andOr evaluates Fn::And or Fn::Or, stopping at the first operand that
// settles the result.
func (c *condEval) andOr(fn string, args []any) (bool, error) {
	if len(args) < 2 {
		return false, fmt.Errorf("%s wants at least 2 arguments", fn)
	}
	for _, a := range args {
		v, err := c.expr(a)
		if err != nil {
			return false, err
		}
		if fn == "Fn::And" && !v {
			return false, nil
		}
		if fn == "Fn::Or" && v {
			return true, nil
		}
	}
	return fn == "Fn::And", nil
}

// Resolver evaluates CloudFormation intrinsic functions: Ref, Fn::Sub,
// Fn::Join, Fn::GetAtt, Fn::If, Fn::Select, Fn::Split, Fn::Base64 and
// AWS::NoValue. Parameters (pseudo parameters included) come from Params;
// references to resources go to Ref and GetAtt.
type Resolver struct {
	Params     map[string]string
	Conditions map[string]bool
	Ref        func(id string) (string, error)
	GetAtt     func(id, attr string) (string, error)
}

// noValue marks a value that AWS::NoValue removed.
type noValue struct{}

// Resolve evaluates every intrinsic function in v. A value that resolves to
// AWS::NoValue is dropped from its map or list; at the top level Resolve
// returns nil.
func (r *Resolver) Resolve(v any) (any, error) { return topLevel(r.resolve(v)) }

// topLevel is a whole document's value: out, or nil when out is
// AWS::NoValue.
func topLevel(out any, err error) (any, error) {
	if _, ok := out.(noValue); ok || err != nil {
		return nil, err
	}
	return out, nil
}

// ResolveString resolves v and requires a string result.
func (r *Resolver) ResolveString(v any) (string, error) {
	out, err := r.Resolve(v)
	if err != nil {
		return "", err
	}
	switch x := out.(type) {
	case string:
		return x, nil
	case int64, float64, bool:
		return scalarString(x), nil
	}
	return "", fmt.Errorf("want a string, got %T", out)
}

func (r *Resolver) resolve(v any) (any, error) {
	if x, ok := v.(map[string]any); ok && len(x) == 1 {
		for fn, arg := range x {
			if fn == "Ref" || strings.HasPrefix(fn, "Fn::") {
				return r.function(fn, arg)
			}
		}
	}
	return mapChildren(v, r.resolve)
}

// mapChildren rebuilds a list or a map with f applied to each element,
// dropping the elements f turns into AWS::NoValue; other values are returned
// as they are.
func mapChildren(v any, f func(any) (any, error)) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			fv, err := f(e)
			if err != nil {
				return nil, err
			}
			if _, drop := fv.(noValue); !drop {
				out = append(out, fv)
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			fv, err := f(e)
			if err != nil {
				return nil, err
			}
			if _, drop := fv.(noValue); !drop {
				out[k] = fv
			}
		}
		return out, nil
	}
	return v, nil
}

func (r *Resolver) function(fn string, arg any) (any, error) {
	args, _ := arg.([]any)
	if want, ok := pairArgs[fn]; ok && len(args) != 2 {
		return nil, fmt.Errorf("%s wants %s", fn, want)
	}
	switch fn {
	case "Ref":
		name, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("!Ref: want a name, got %v", arg)
		}
		return r.ref(name)
	case "Fn::If":
		return r.fnIf(args)
	case "Fn::GetAtt":
		return r.getAtt(arg)
	case "Fn::Join":
		return r.join(args[0], args[1])
	case "Fn::Split":
		return r.split(args[0], args[1])
	case "Fn::Select":
		return r.selectOne(args[0], args[1])
	case "Fn::Base64":
		s, err := r.ResolveString(arg)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	case "Fn::Sub":
		return r.sub(arg)
	}
	return nil, fmt.Errorf("unsupported intrinsic function %s", fn)
}

func (r *Resolver) fnIf(args []any) (any, error) {
	branch, err := ifBranch(args, r.Conditions)
	if err != nil {
		return nil, err
	}
	return r.resolve(branch)
}

// ifBranch is the branch Fn::If's [condition, then, else] selects.
func ifBranch(args []any, conds map[string]bool) (any, error) {
	if len(args) != 3 {
		return nil, fmt.Errorf("Fn::If wants [condition, then, else]")
	}
	name, _ := args[0].(string)
	c, ok := conds[name]
	if !ok {
		return nil, fmt.Errorf("Fn::If: unknown condition %q", name)
	}
	if c {
		return args[1], nil
	}
	return args[2], nil
}

func (r *Resolver) getAtt(arg any) (any, error) {
	var id, attr string
	switch a := arg.(type) {
	case string:
		id, attr, _ = strings.Cut(a, ".")
	case []any:
		if len(a) == 2 {
			id, _ = a[0].(string)
			attr, _ = a[1].(string)
		}
	}
	if id == "" || attr == "" {
		return nil, fmt.Errorf("Fn::GetAtt: want [resource, attribute], got %v", arg)
	}
	if r.GetAtt == nil {
		return nil, fmt.Errorf("Fn::GetAtt %s.%s: resource attributes unknown here", id, attr)
	}
	return r.GetAtt(id, attr)
}

// pairArgs names the two arguments of the intrinsic functions that take a
// pair.
var pairArgs = map[string]string{
	"Fn::Join":   "[delimiter, list]",
	"Fn::Split":  "[delimiter, string]",
	"Fn::Select": "[index, list]",
}

// resolveList resolves v and requires a list.
func (r *Resolver) resolveList(fn string, v any) ([]any, error) {
	list, err := r.resolve(v)
	if err != nil {
		return nil, err
	}
	items, ok := list.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: %v is not a list", fn, list)
	}
	return items, nil
}

func (r *Resolver) join(delimiter, list any) (any, error) {
	delim, _ := delimiter.(string)
	items, err := r.resolveList("Fn::Join", list)
	if err != nil {
		return nil, err
	}
	parts := make([]string, len(items))
	for i, it := range items {
		s, ok := it.(string)
		if !ok {
			return nil, fmt.Errorf("Fn::Join: element %d is %T, not a string", i, it)
		}
		parts[i] = s
	}
	return strings.Join(parts, delim), nil
}

func (r *Resolver) split(delimiter, str any) (any, error) {
	delim, _ := delimiter.(string)
	s, err := r.ResolveString(str)
	if err != nil {
		return nil, fmt.Errorf("Fn::Split: %w", err)
	}
	var out []any
	for _, p := range strings.Split(s, delim) {
		out = append(out, p)
	}
	return out, nil
}

func (r *Resolver) selectOne(index, list any) (any, error) {
	idx, err := r.ResolveString(index)
	if err != nil {
		return nil, err
	}
	i, err := strconv.Atoi(idx)
	if err != nil {
		return nil, fmt.Errorf("Fn::Select: index %q", idx)
	}
	items, err := r.resolveList("Fn::Select", list)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(items) {
		return nil, fmt.Errorf("Fn::Select: index %d out of range", i)
	}
	return items[i], nil
}

func (r *Resolver) ref(name string) (any, error) {
	if name == "AWS::NoValue" {
		return noValue{}, nil
	}
	if v, ok := r.Params[name]; ok {
		return v, nil
	}
	if strings.HasPrefix(name, "AWS::") {
		return nil, fmt.Errorf("!Ref %s: unknown pseudo parameter", name)
	}
	if r.Ref == nil {
		return nil, fmt.Errorf("!Ref %s: not a parameter and resources are unknown here", name)
	}
	return r.Ref(name)
}

func (r *Resolver) sub(arg any) (any, error) {
	var text string
	vars := map[string]any{}
	switch a := arg.(type) {
	case string:
		text = a
	case []any:
		if len(a) != 2 {
			return nil, fmt.Errorf("Fn::Sub wants a string or [string, variables]")
		}
		text, _ = a[0].(string)
		m, _ := a[1].(map[string]any)
		for k, v := range m {
			rv, err := r.ResolveString(v)
			if err != nil {
				return nil, fmt.Errorf("Fn::Sub variable %s: %w", k, err)
			}
			vars[k] = rv
		}
	default:
		return nil, fmt.Errorf("Fn::Sub wants a string or [string, variables]")
	}
	var b strings.Builder
	for {
		i := strings.Index(text, "${")
		if i < 0 {
			b.WriteString(text)
			break
		}
		b.WriteString(text[:i])
		j := strings.Index(text[i:], "}")
		if j < 0 {
			return nil, fmt.Errorf("Fn::Sub: unterminated ${ in %q", text)
		}
		name := text[i+2 : i+j]
		text = text[i+j+1:]
		if strings.HasPrefix(name, "!") { // ${!Literal}
			b.WriteString("${" + name[1:] + "}")
			continue
		}
		val, err := r.subVar(name, vars)
		if err != nil {
			return nil, fmt.Errorf("Fn::Sub ${%s}: %w", name, err)
		}
		b.WriteString(val)
	}
	return b.String(), nil
}

func (r *Resolver) subVar(name string, vars map[string]any) (string, error) {
	if v, ok := vars[name]; ok {
		return v.(string), nil
	}
	if id, attr, ok := strings.Cut(name, "."); ok && !strings.HasPrefix(name, "AWS::") {
		v, err := r.function("Fn::GetAtt", []any{id, attr})
		if err != nil {
			return "", err
		}
		return scalarString(v), nil
	}
	v, err := r.ref(name)
	if err != nil {
		return "", err
	}
	if _, ok := v.(noValue); ok {
		return "", fmt.Errorf("AWS::NoValue inside Fn::Sub")
	}
	return scalarString(v), nil
}

// PruneConditions returns a copy of v with every Fn::If replaced by the
// branch its condition selects and every AWS::NoValue removed. Other
// intrinsic functions are left for CloudFormation to evaluate.
func PruneConditions(v any, conds map[string]bool) (any, error) { return topLevel(prune(v, conds)) }

func prune(v any, conds map[string]bool) (any, error) {
	if x, ok := v.(map[string]any); ok && len(x) == 1 {
		if ref, ok := x["Ref"].(string); ok && ref == "AWS::NoValue" {
			return noValue{}, nil
		}
		if args, ok := x["Fn::If"].([]any); ok {
			branch, err := ifBranch(args, conds)
			if err != nil {
				return nil, err
			}
			return prune(branch, conds)
		}
	}
	return mapChildren(v, func(e any) (any, error) { return prune(e, conds) })
}

// Specialize returns the template as CloudFormation would create it for the
// given parameter values: conditions evaluated, resources and outputs whose
// condition is false removed, every Fn::If replaced by its selected branch and
// AWS::NoValue dropped. The Conditions section and the Condition keys are gone.
// It also returns the evaluated conditions.
func (t Template) Specialize(params map[string]string) (Template, map[string]bool, error) {
	conds, err := t.Conditions(params)
	if err != nil {
		return nil, nil, err
	}
	out := t.Clone()
	delete(out, "Conditions")
	for _, sec := range []string{"Resources", "Outputs"} {
		m := out.section(sec)
		for id, v := range m {
			e, _ := v.(map[string]any)
			if c, ok := e["Condition"].(string); ok {
				val, known := conds[c]
				if !known {
					return nil, nil, fmt.Errorf("%s %s: unknown condition %q", sec, id, c)
				}
				if !val {
					delete(m, id)
					continue
				}
				delete(e, "Condition")
			}
			pv, err := PruneConditions(e, conds)
			if err != nil {
				return nil, nil, fmt.Errorf("%s %s: %w", sec, id, err)
			}
			m[id] = pv
		}
	}
	if g := out.section("Globals"); g != nil {
		pg, err := PruneConditions(map[string]any(g), conds)
		if err != nil {
			return nil, nil, fmt.Errorf("section Globals: %w", err)
		}
		out["Globals"] = pg
	}
	return out, conds, nil
}
