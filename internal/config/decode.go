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

// Unmarshaler is implemented by the type of a field that reads its value
// itself, for a key whose value may take several forms (a command as a
// list or as one string). value is as the TOML decoder gives it: string,
// bool, int64, float64, time.Time, []any or map[string]any.
type Unmarshaler interface {
	UnmarshalTOML(value any) error
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	timeType        = reflect.TypeFor[time.Time]()
	unmarshalerType = reflect.TypeFor[Unmarshaler]()
)

// DecodeTable fills the structs vs point to from one table of the config
// file, by the fields' `toml` tags, strictly: a key no field has is an
// error naming it and the keys there are, and so is a value of the wrong
// type. Fields keep their values for keys the table lacks, so set
// defaults first.
//
// Several structs share a table whose keys belong to several readers (a
// rule's own keys and those of its actions): each key goes to the first
// struct with a field of that name.
//
// Supported field types: string, bool, integers, floats, time.Duration
// (ParseDuration's form; not negative), time.Time (a TOML date-time or an
// RFC 3339 string), []string, map[string]string, and types implementing
// Unmarshaler.
func DecodeTable(table map[string]any, vs ...any) error {
	fields := map[string]reflect.Value{}
	var known []string
	for _, v := range vs {
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
			return fmt.Errorf("DecodeTable: want pointers to structs, got %T", v)
		}
		st := rv.Elem()
		for i := range st.NumField() {
			name := tagName(st.Type().Field(i))
			if _, dup := fields[name]; name == "" || dup {
				continue
			}
			fields[name] = st.Field(i)
			known = append(known, name)
		}
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
		if err := setValue(k, dst, table[k]); err != nil {
			return err
		}
	}
	return nil
}

// TableKeys returns the keys DecodeTable takes into the struct v points
// to, in the order of its fields.
func TableKeys(v any) []string {
	t := reflect.TypeOf(v)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if name := tagName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	return keys
}

// tagName is the key of a struct field, or "" for a field no key fills.
func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

// setValue stores raw, the value of key, in dst. Its errors begin with the
// key, and with the value too where the value was the wrong one of its
// type (a duration, a time).
func setValue(key string, dst reflect.Value, raw any) error {
	if dst.Addr().Type().Implements(unmarshalerType) {
		if err := dst.Addr().Interface().(Unmarshaler).UnmarshalTOML(raw); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	switch dst.Type() {
	case durationType:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("%s: want a duration like \"30s\" or \"1d\", got %v", key, raw)
		}
		d, err := ParseDuration(s)
		if err != nil || d < 0 {
			return fmt.Errorf("%s %q: want a duration like 90s, 15m, 1h or 7d", key, s)
		}
		dst.SetInt(int64(d))
		return nil
	case timeType:
		switch x := raw.(type) {
		case time.Time:
			dst.Set(reflect.ValueOf(x))
		case string:
			t, err := time.Parse(time.RFC3339, x)
			if err != nil {
				return fmt.Errorf("%s %q: want an RFC 3339 time like 2026-12-01T00:00:00Z", key, x)
			}
			dst.Set(reflect.ValueOf(t))
		default:
			return fmt.Errorf("%s: want an RFC 3339 time like 2026-12-01T00:00:00Z, got %v", key, raw)
		}
		return nil
	}
	var err error
	switch dst.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			return fmt.Errorf("%s: want a string, got %v", key, raw)
		}
		dst.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return fmt.Errorf("%s: want true or false, got %v", key, raw)
		}
		dst.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(int64)
		if !ok || dst.OverflowInt(n) {
			return fmt.Errorf("%s: want a whole number, got %v", key, raw)
		}
		dst.SetInt(n)
	case reflect.Float32, reflect.Float64:
		switch x := raw.(type) {
		case float64:
			dst.SetFloat(x)
		case int64:
			dst.SetFloat(float64(x))
		default:
			return fmt.Errorf("%s: want a number, got %v", key, raw)
		}
	case reflect.Slice:
		err = setStrings(dst, raw)
	case reflect.Map:
		err = setStringMap(dst, raw)
	default:
		err = fmt.Errorf("unsupported field type %s", dst.Type())
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

func setStrings(dst reflect.Value, raw any) error {
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
	return nil
}

func setStringMap(dst reflect.Value, raw any) error {
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
	return nil
}
