package schema

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest host or sensor name, in bytes.
const MaxNameLen = 64

// ErrInvalidName is returned (wrapped) by [ValidateName] for a name outside
// the allowed set.
var ErrInvalidName = errors.New("invalid name")

// nameByte reports whether b may appear in a host or sensor name:
// [A-Za-z0-9_.-]. The set excludes every MQTT wildcard and separator, so a
// valid name can never change the meaning of a topic.
func nameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
		b == '_' || b == '.' || b == '-'
}

// ValidateName returns nil if s is a valid host or sensor name: 1 to
// [MaxNameLen] characters from [A-Za-z0-9_.-]. Otherwise it returns an error
// wrapping [ErrInvalidName] that says what is wrong.
func ValidateName(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%w: %d characters, at most %d", ErrInvalidName, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			// Say the character, not its first byte: é, not Ã.
			c, _ := utf8.DecodeRuneInString(s[i:])
			return fmt.Errorf("%w: %q contains %q (allowed: A-Z a-z 0-9 _ . -)", ErrInvalidName, s, c)
		}
	}
	return nil
}

// SanitizeName maps any string, typically an OS hostname, into a valid
// name: characters outside the allowed set become '-', runs of '-' collapse,
// leading and trailing '-' and '.' are trimmed, and the result is cut to
// [MaxNameLen]. A string with nothing usable gives "unknown".
func SanitizeName(s string) string {
	var b strings.Builder
	lastDash := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !nameByte(c) {
			c = '-'
		}
		if c == '-' && lastDash {
			continue
		}
		lastDash = c == '-'
		b.WriteByte(c)
	}
	out := strings.Trim(b.String(), "-.")
	if len(out) > MaxNameLen {
		out = strings.TrimRight(out[:MaxNameLen], "-.")
	}
	if out == "" {
		return "unknown"
	}
	return out
}
