package config

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads every duration of apd — flags, config keys, query
// arguments: Go's form (90s, 1h30m) and days and weeks (7d, 2w, 1.5d).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	if n := len(s) - 1; s[n] == 'd' || s[n] == 'w' {
		f, err := strconv.ParseFloat(s[:n], 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("duration %q: want a number before %q", s, s[n:])
		}
		unit := 24 * time.Hour
		if s[n] == 'w' {
			unit *= 7
		}
		return time.Duration(f * float64(unit)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 90s, 15m, 1h, 7d", s)
	}
	return d, nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// DecodeTable fills the struct v points to from a table of the config
// file, by the fields' `toml` tags, strictly: a key no field has is an
// error naming it and the keys there are, and so is a value of the wrong
// type. Durations take ParseDuration's form. Supported field types:
// string, bool, integers, floats, time.Duration, []string and
// map[string]string.
func DecodeTable(table map[string]any, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("DecodeTable: want a pointer to a struct, got %T", v)
	}
	st := rv.Elem()
	fields := map[string]reflect.Value{}
	var known []string
	for i := range st.NumField() {
		f := st.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = st.Field(i)
		known = append(known, name)
	}
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		dst, ok := fields[k]
		if !ok {
			if len(known) == 0 {
				return fmt.Errorf("unknown key %s (this table takes none)", k)
			}
			return fmt.Errorf("unknown key %s (known: %s)", k, strings.Join(known, ", "))
		}
		if err := setValue(dst, table[k]); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

func setValue(dst reflect.Value, raw any) error {
	if dst.Type() == durationType {
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("want a duration like \"30s\" or \"1d\", got %v", raw)
		}
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		dst.SetInt(int64(d))
		return nil
	}
	switch dst.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("want a string, got %v", raw)
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return fmt.Errorf("want true or false, got %v", raw)
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(int64)
		if !ok || dst.OverflowInt(n) {
			return fmt.Errorf("want a whole number, got %v", raw)
		}
		dst.SetInt(n)
	case reflect.Float32, reflect.Float64:
		switch x := raw.(type) {
		case float64:
			dst.SetFloat(x)
		case int64:
			dst.SetFloat(float64(x))
		default:
			return fmt.Errorf("want a number, got %v", raw)
		}
	case reflect.Slice:
		if dst.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported field type %s", dst.Type())
		}
		list, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("want a list of strings, got %v", raw)
		}
		out := reflect.MakeSlice(dst.Type(), len(list), len(list))
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("want a list of strings, got %v", raw)
			}
			out.Index(i).SetString(s)
		}
		dst.Set(out)
	case reflect.Map:
		if dst.Type().Key().Kind() != reflect.String || dst.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported field type %s", dst.Type())
		}
		m, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("want a table of strings, got %v", raw)
		}
		out := reflect.MakeMapWithSize(dst.Type(), len(m))
		for k, e := range m {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("%s: want a string, got %v", k, e)
			}
			out.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(s))
		}
		dst.Set(out)
	default:
		return fmt.Errorf("unsupported field type %s", dst.Type())
	}
	return nil
}
