package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// calc is a compiled arithmetic expression over named inputs.
type calc func(vars map[string]float64) float64

// parseArith compiles an expression of + - * /, parentheses, unary minus,
// numbers and the names in vars, with the usual precedence. Errors give
// the position of the problem.
func parseArith(src string, vars map[string]bool) (calc, error) {
	p := &arithParser{src: src, vars: vars}
	p.next()
	c, err := p.sum()
	if err != nil {
		return nil, err
	}
	if p.tok != "" {
		return nil, p.errorf("unexpected %q", p.tok)
	}
	return c, nil
}

type arithParser struct {
	src  string
	vars map[string]bool
	pos  int    // offset of tok
	tok  string // "" at the end
	end  int    // offset after tok
}

func (p *arithParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at %d: %s", p.pos+1, fmt.Sprintf(format, args...))
}

func (p *arithParser) next() {
	i := p.end
	for i < len(p.src) && p.src[i] == ' ' {
		i++
	}
	p.pos = i
	if i >= len(p.src) {
		p.tok, p.end = "", i
		return
	}
	j := i + 1
	if r := rune(p.src[i]); unicode.IsLetter(r) || r == '_' || unicode.IsDigit(r) || r == '.' {
		for j < len(p.src) && (unicode.IsLetter(rune(p.src[j])) || unicode.IsDigit(rune(p.src[j])) || strings.ContainsRune("_.", rune(p.src[j]))) {
			j++
		}
	}
	p.tok, p.end = p.src[i:j], j
}

// sum: product (("+"|"-") product)*
func (p *arithParser) sum() (calc, error) {
	left, err := p.product()
	if err != nil {
		return nil, err
	}
	for p.tok == "+" || p.tok == "-" {
		op := p.tok
		p.next()
		right, err := p.product()
		if err != nil {
			return nil, err
		}
		l := left
		if op == "+" {
			left = func(v map[string]float64) float64 { return l(v) + right(v) }
		} else {
			left = func(v map[string]float64) float64 { return l(v) - right(v) }
		}
	}
	return left, nil
}

// product: unary (("*"|"/") unary)*
func (p *arithParser) product() (calc, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.tok == "*" || p.tok == "/" {
		op := p.tok
		p.next()
		right, err := p.unary()
		if err != nil {
			return nil, err
		}
		l := left
		if op == "*" {
			left = func(v map[string]float64) float64 { return l(v) * right(v) }
		} else {
			left = func(v map[string]float64) float64 { return l(v) / right(v) }
		}
	}
	return left, nil
}

// unary: "-" unary | "(" sum ")" | number | name
func (p *arithParser) unary() (calc, error) {
	switch tok := p.tok; {
	case tok == "-":
		p.next()
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(v map[string]float64) float64 { return -x(v) }, nil
	case tok == "(":
		p.next()
		x, err := p.sum()
		if err != nil {
			return nil, err
		}
		if p.tok != ")" {
			return nil, p.errorf("expected )")
		}
		p.next()
		return x, nil
	case tok == "":
		return nil, p.errorf("expected an input name or a number")
	case p.vars[tok]:
		p.next()
		return func(v map[string]float64) float64 { return v[tok] }, nil
	default:
		n, err := strconv.ParseFloat(tok, 64)
		if err != nil {
			return nil, p.errorf("expected an input name or a number but found %q", tok)
		}
		p.next()
		return func(map[string]float64) float64 { return n }, nil
	}
}
