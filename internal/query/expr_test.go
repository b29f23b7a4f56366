package query

import (
	"strings"
	"testing"
)

func TestParseWhere(t *testing.T) {
	tests := []struct {
		expr string
		in   []float64
		want []bool
	}{
		{"value > 25", []float64{24.9, 25, 25.1}, []bool{false, false, true}},
		{"value >= 25", []float64{24.9, 25}, []bool{false, true}},
		{"value < 0", []float64{-1, 0}, []bool{true, false}},
		{"value <= -40", []float64{-40, -39.9}, []bool{true, false}},
		{"value == 21.5", []float64{21.5, 21.6}, []bool{true, false}},
		{"value != 21.5", []float64{21.5, 21.6}, []bool{false, true}},
		{"25 < value", []float64{25, 26}, []bool{false, true}},
		{"value > 18 and value < 25", []float64{17, 20, 26}, []bool{false, true, false}},
		{"value < 18 or value > 25", []float64{17, 20, 26}, []bool{true, false, true}},
		{"not value > 20", []float64{19, 21}, []bool{true, false}},
		// and binds tighter than or; not tighter than and.
		{"value < 0 or value > 10 and value < 20", []float64{-1, 5, 15, 25}, []bool{true, false, true, false}},
		{"(value < 0 or value > 10) and value < 20", []float64{-1, 5, 15, 25}, []bool{true, false, true, false}},
		{"not value < 0 and value < 20", []float64{-1, 5, 25}, []bool{false, true, false}},
		{"not (value < 0 or value > 20)", []float64{-1, 5, 25}, []bool{false, true, false}},
		{"value == true", []float64{1, 0}, []bool{true, false}},
		{"value == false", []float64{1, 0}, []bool{false, true}},
		{"VALUE > 1E3", []float64{999, 1001}, []bool{false, true}},
		{"value > -1.5e-3", []float64{-0.002, 0}, []bool{false, true}},
	}
	for _, tc := range tests {
		c, err := ParseWhere(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		for i, v := range tc.in {
			if got := c(v); got != tc.want[i] {
				t.Errorf("%q on %v = %v, want %v", tc.expr, v, got, tc.want[i])
			}
		}
	}
}

func TestParseWhereErrors(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"", "expected value or a number"},
		{"value", "expected a comparison"},
		{"value >", "expected value or a number"},
		{"value = 3", "expected a comparison"},
		{"temp > 3", "expected value or a number but found \"temp\""},
		{"(value > 3", "expected )"},
		{"value > 3)", "unexpected \")\""},
		{"1 < 2", "one side must be value"},
		{"value > 3 and", "at 14"},
		{"value > 1.2.3", "found \"1.2.3\""},
	}
	for _, tc := range tests {
		_, err := ParseWhere(tc.expr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.expr, err, tc.want)
		}
	}
}

// TestParseWhereBounds: a condition nested deeper than MaxWhereDepth or
// longer than MaxWhereLength is refused with an error naming the bound,
// also the megabyte of parentheses a hostile URL carried; conditions at
// the bounds still compile.
func TestParseWhereBounds(t *testing.T) {
	nest := func(open, n int) string {
		return strings.Repeat("(", open) + "value > 1" + strings.Repeat(")", n)
	}
	nots := func(n int) string { return strings.Repeat("not ", n) + "value > 1" }
	long := "value > 1" + strings.Repeat(" or value > 1", (MaxWhereLength-9)/13)
	tests := []struct {
		name, expr string
		want       string // "" for accepted
	}{
		{"parentheses at the depth bound", nest(MaxWhereDepth, MaxWhereDepth), ""},
		{"nots at the depth bound", nots(MaxWhereDepth), ""},
		{"parentheses one too deep", nest(MaxWhereDepth+1, MaxWhereDepth+1), "nested more than 32 levels"},
		{"nots one too deep", nots(MaxWhereDepth + 1), "nested more than 32 levels"},
		{"not and parentheses together", strings.Repeat("not (", MaxWhereDepth/2+1) + "value > 1" + strings.Repeat(")", MaxWhereDepth/2+1), "nested more than"},
		{"unclosed and deep", strings.Repeat("(", 1000), "nested more than"},
		{"at the length bound", long, ""},
		{"one byte too long", long + strings.Repeat(" ", MaxWhereLength-len(long)+1), "at most 4096 allowed"},
		{"a megabyte of parentheses", nest(520000, 520000), "at most 4096 allowed"},
	}
	for _, tc := range tests {
		if tc.want == "" && len(tc.expr) > MaxWhereLength {
			t.Fatalf("%s: the case itself is %d bytes", tc.name, len(tc.expr))
		}
		c, err := ParseWhere(tc.expr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want == "" && !c(2):
			t.Errorf("%s: false on 2", tc.name)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}
