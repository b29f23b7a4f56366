package schema

import (
	"errors"
	"fmt"
)

// Canonical unit names (SPEC §2).
const (
	UnitCelsius     = "degC"
	UnitFahrenheit  = "degF"
	UnitKelvin      = "K"
	UnitPercent     = "percent"
	UnitRatio       = "ratio"
	UnitBytes       = "B"
	UnitWatt        = "W"
	UnitWattHour    = "Wh"
	UnitJoule       = "J"
	UnitVolt        = "V"
	UnitAmpere      = "A"
	UnitPascal      = "Pa"
	UnitHectopascal = "hPa"
	UnitLux         = "lx"
	UnitPPM         = "ppm"
	UnitSecond      = "s"
	UnitDegree      = "deg"
)

// ErrUnknownUnit and ErrIncompatibleUnits are returned (wrapped) by
// [ConvertUnit].
var (
	ErrUnknownUnit       = errors.New("unknown unit")
	ErrIncompatibleUnits = errors.New("incompatible units")
)

// unitAliases maps the long and alternative names other tools send to the
// canonical ones.
var unitAliases = map[string]string{
	"degree_Celsius": UnitCelsius, "celsius": UnitCelsius, "°C": UnitCelsius, "C": UnitCelsius,
	"degree_Fahrenheit": UnitFahrenheit, "fahrenheit": UnitFahrenheit, "°F": UnitFahrenheit, "F": UnitFahrenheit,
	"kelvin": UnitKelvin,
	"%":      UnitPercent, "percentage": UnitPercent,
	"byte": UnitBytes, "bytes": UnitBytes,
	"watt": UnitWatt, "watt_hour": UnitWattHour, "joule": UnitJoule,
	"volt": UnitVolt, "ampere": UnitAmpere,
	"pascal": UnitPascal, "hectopascal": UnitHectopascal,
	"lux": UnitLux, "parts_per_million": UnitPPM,
	"second": UnitSecond, "seconds": UnitSecond, "sec": UnitSecond,
	"degree": UnitDegree, "degrees": UnitDegree,
}

var canonicalUnits = map[string]bool{
	UnitCelsius: true, UnitFahrenheit: true, UnitKelvin: true, UnitPercent: true,
	UnitRatio: true, UnitBytes: true, UnitWatt: true, UnitWattHour: true,
	UnitJoule: true, UnitVolt: true, UnitAmpere: true, UnitPascal: true,
	UnitHectopascal: true, UnitLux: true, UnitPPM: true, UnitSecond: true,
	UnitDegree: true,
}

// CanonicalUnit returns the canonical name of unit and true, or unit
// unchanged and false when it is neither canonical nor a known alias.
func CanonicalUnit(unit string) (string, bool) {
	if canonicalUnits[unit] {
		return unit, true
	}
	if c, ok := unitAliases[unit]; ok {
		return c, true
	}
	return unit, false
}

// linear units convert by value×factor+offset into a base unit of their
// dimension.
type linear struct {
	dimension      string
	factor, offset float64
}

var linearUnits = map[string]linear{
	UnitCelsius:     {"temperature", 1, 0},
	UnitKelvin:      {"temperature", 1, -273.15},
	UnitWattHour:    {"energy", 3600, 0},
	UnitJoule:       {"energy", 1, 0},
	UnitPascal:      {"pressure", 1, 0},
	UnitHectopascal: {"pressure", 100, 0},
	UnitRatio:       {"fraction", 1, 0},
	UnitPercent:     {"fraction", 0.01, 0},
}

// ConvertUnit converts v from one unit to another (names may be aliases).
// Conversion is plain arithmetic: °F = °C × 9 / 5 + 32, K = °C + 273.15,
// 1 Wh = 3600 J, 1 hPa = 100 Pa, 1 = 100 %.
func ConvertUnit(v float64, from, to string) (float64, error) {
	f, okF := CanonicalUnit(from)
	t, okT := CanonicalUnit(to)
	if !okT {
		return 0, fmt.Errorf("%w: %q", ErrUnknownUnit, to)
	}
	if f == t {
		return v, nil
	}
	if !okF {
		return 0, fmt.Errorf("%w: %q", ErrUnknownUnit, from)
	}
	// Fahrenheit is the one unit that is not a scale of its base with the
	// offset applied after: handle it through Celsius.
	if f == UnitFahrenheit {
		v, f = (v-32)*5/9, UnitCelsius
	}
	toF := t == UnitFahrenheit
	if toF {
		t = UnitCelsius
	}
	lf, okF := linearUnits[f]
	lt, okT := linearUnits[t]
	if !okF || !okT || lf.dimension != lt.dimension {
		if f == t {
			return celsiusTo(v, toF), nil
		}
		return 0, fmt.Errorf("%w: %s to %s", ErrIncompatibleUnits, from, to)
	}
	base := v*lf.factor + lf.offset
	return celsiusTo((base-lt.offset)/lt.factor, toF), nil
}

func celsiusTo(c float64, fahrenheit bool) float64 {
	if fahrenheit {
		return c*9/5 + 32
	}
	return c
}
