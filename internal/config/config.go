// Package config loads function configuration from environment variables.
//
// Each field of a config struct carries an `env:"NAME"` tag and optionally
// `default:"value"`, `required:"true"`, `nonzero:"true"`, `min:"n"`,
// `max:"n"` and `zero:"unset"` (zero means unset: the bounds apply to other
// values). A field with a default but no env tag is a fixed setting: it
// always gets its default, and errors name the field. Supported field types are string, []string (comma-separated,
// blanks dropped), int, bool and time.Duration (Go duration strings such
// as "90s"). A bad value is an error naming the variable, so a
// misconfigured function fails at start-up, not mid-run.
package config

import (
	"cmp"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Getenv looks up an environment variable; os.LookupEnv in production.
type Getenv func(key string) (string, bool)

// Load fills the struct pointed to by dst from the process environment.
func Load(dst any) error { return LoadFrom(os.LookupEnv, dst) }

// LoadFrom fills the struct pointed to by dst using getenv.
func LoadFrom(getenv Getenv, dst any) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config: want pointer to struct, got %T", dst)
	}
	return load(getenv, v.Elem(), true)
}

// Defaults returns a T (a config struct) holding its fields' tag defaults
// and zero values elsewhere, required fields included: what a handler built
// without an environment (tests, the local demo) starts from, so every
// default is written once, in the tags. It panics on a default its own tag
// check rejects (a programming error).
func Defaults[T any]() T {
	var c T
	v := reflect.ValueOf(&c).Elem()
	if v.Kind() != reflect.Struct {
		panic(fmt.Sprintf("config.Defaults: %T is not a struct", c))
	}
	if err := load(func(string) (string, bool) { return "", false }, v, false); err != nil {
		panic(fmt.Sprintf("config.Defaults[%T]: %v", c, err))
	}
	return c
}

func load(getenv Getenv, v reflect.Value, required bool) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		fv := v.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if err := load(getenv, fv, required); err != nil {
				return err
			}
			continue
		}
		name, fixed := fieldName(f)
		if name == "" {
			continue
		}
		raw, ok := "", false
		if !fixed {
			raw, ok = getenv(name)
		}
		raw = strings.TrimSpace(raw)
		if !ok || raw == "" {
			if required && f.Tag.Get("required") == "true" {
				return fmt.Errorf("config: %s is required", name)
			}
			def, has := f.Tag.Lookup("default")
			if !has {
				continue
			}
			raw = def
		}
		if err := set(fv, raw); err != nil {
			return fmt.Errorf("config: %s=%q: %w", name, raw, err)
		}
		if err := checkBounds(f.Tag, fv); err != nil {
			return fmt.Errorf("config: %s=%q: %w", name, raw, err)
		}
	}
	return nil
}

// fieldName is the name a field's errors give: its variable, or for a fixed
// setting (a default, no env tag) the field's name; "" for neither.
func fieldName(f reflect.StructField) (name string, fixed bool) {
	if name := f.Tag.Get("env"); name != "" {
		return name, false
	}
	if _, ok := f.Tag.Lookup("default"); ok {
		return f.Name, true
	}
	return "", false
}

// Check applies the nonzero, min and max tags of v (a config struct, or
// one embedded in one) to its values, as Load does: for settings built
// without an environment (tests). The error names the variable.
func Check(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return fmt.Errorf("config: want a struct, got %T", v)
	}
	return check(rv)
}

func check(v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f, fv := t.Field(i), v.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if err := check(fv); err != nil {
				return err
			}
			continue
		}
		name := cmp.Or(f.Tag.Get("env"), f.Name)
		if err := checkBounds(f.Tag, fv); err != nil {
			return fmt.Errorf("config: %s=%v: %w", name, fv.Interface(), err)
		}
	}
	return nil
}

// checkBounds applies a field's nonzero, max and min tags (none to a zero
// value tagged zero:"unset").
func checkBounds(tag reflect.StructTag, fv reflect.Value) error {
	if tag.Get("zero") == "unset" && fv.IsZero() {
		return nil
	}
	if tag.Get("nonzero") == "true" && fv.IsZero() {
		return fmt.Errorf("must not be zero")
	}
	if max, ok := tag.Lookup("max"); ok {
		if err := checkMax(fv, max); err != nil {
			return err
		}
	}
	if min, ok := tag.Lookup("min"); ok {
		return checkMin(fv, min)
	}
	return nil
}

func set(fv reflect.Value, raw string) error {
	switch fv.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("not a duration (want e.g. 90s, 2m)")
		}
		if d < 0 {
			return fmt.Errorf("must not be negative")
		}
		fv.SetInt(int64(d))
	case string:
		fv.SetString(raw)
	case []string:
		var out []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		fv.Set(reflect.ValueOf(out))
	case int, int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		fv.SetInt(n)
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("not a boolean (want true or false)")
		}
		fv.SetBool(b)
	default:
		return fmt.Errorf("unsupported field type %s", fv.Type())
	}
	return nil
}

func checkMin(fv reflect.Value, min string) error {
	switch fv.Interface().(type) {
	case int, int64:
		m, _ := strconv.ParseInt(min, 10, 64)
		if fv.Int() < m {
			return fmt.Errorf("must be at least %d", m)
		}
	case time.Duration:
		m, _ := time.ParseDuration(min)
		if time.Duration(fv.Int()) < m {
			return fmt.Errorf("must be at least %s", m)
		}
	case []string:
		m, _ := strconv.Atoi(min)
		if fv.Len() < m {
			return fmt.Errorf("needs at least %d entries", m)
		}
	}
	return nil
}

func checkMax(fv reflect.Value, max string) error {
	switch fv.Interface().(type) {
	case int, int64:
		m, _ := strconv.ParseInt(max, 10, 64)
		if fv.Int() > m {
			return fmt.Errorf("must be at most %d", m)
		}
	case time.Duration:
		m, _ := time.ParseDuration(max)
		if time.Duration(fv.Int()) > m {
			return fmt.Errorf("must be at most %s", m)
		}
	}
	return nil
}

// EnvNames lists the environment variables a config struct reads, in field
// order. The template tests use it to check template.yaml sets exactly these.
func EnvNames(v any) []string {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			names = append(names, EnvNames(reflect.New(f.Type).Elem().Interface())...)
			continue
		}
		if n := f.Tag.Get("env"); n != "" {
			names = append(names, n)
		}
	}
	return names
}
