package query

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Cond is a compiled --where condition on a reading's numeric value.
type Cond func(v float64) bool

// MaxWhereLength bounds a condition's length in bytes. The parser and
// the compiled condition take memory and stack in proportion to it; 4 KiB
// holds a few hundred comparisons, more than any person writes, while an
// HTTP client can no longer hand the server a megabyte to parse.
const MaxWhereLength = 4096

// MaxWhereDepth bounds how deeply parentheses and nots nest. The parser
// recurses once per level (a few hundred bytes of stack each) and so does
// every evaluation: unbounded, 520,000 parentheses in one URL took
// hundreds of megabytes per request. 32 levels is far beyond what a
// condition needs.
const MaxWhereDepth = 32

// ParseWhere compiles a condition: comparisons (< <= > >= == !=) between
// `value` and numbers, combined with and, or, not and parentheses, with
// the usual precedence (not > and > or). true and false stand for 1 and 0,
// so `value == true` selects booleans that are true. Errors give the
// position of the problem. A condition longer than MaxWhereLength bytes
// or nested deeper than MaxWhereDepth is refused before it costs more.
func ParseWhere(src string) (Cond, error) {
	if len(src) > MaxWhereLength {
		return nil, fmt.Errorf("where: %d bytes long, at most %d allowed", len(src), MaxWhereLength)
	}
	p := &parser{src: src}
	p.next()
	c, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.errorf("unexpected %q", p.tok.text)
	}
	return c, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokNumber
	tokValue
	tokOp
	tokAnd
	tokOr
	tokNot
	tokLParen
	tokRParen
	tokBad
)

type token struct {
	kind tokKind
	text string
	num  float64
	pos  int
}

type parser struct {
	src   string
	i     int
	tok   token
	depth int // parentheses and nots open at the current token
}

// enter counts one more level of nesting, refusing one beyond
// MaxWhereDepth; leave undoes it.
func (p *parser) enter() error {
	if p.depth >= MaxWhereDepth {
		return p.errorf("nested more than %d levels deep (parentheses and not)", MaxWhereDepth)
	}
	p.depth++
	return nil
}

func (p *parser) leave() { p.depth-- }

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("where: at %d: %s", p.tok.pos+1, fmt.Sprintf(format, args...))
}

func (p *parser) next() {
	for p.i < len(p.src) && unicode.IsSpace(rune(p.src[p.i])) {
		p.i++
	}
	start := p.i
	if p.i >= len(p.src) {
		p.tok = token{kind: tokEOF, pos: start, text: "end"}
		return
	}
	c := p.src[p.i]
	switch {
	case c == '(':
		p.i++
		p.tok = token{kind: tokLParen, text: "(", pos: start}
	case c == ')':
		p.i++
		p.tok = token{kind: tokRParen, text: ")", pos: start}
	case strings.ContainsRune("<>=!", rune(c)):
		p.i++
		if p.i < len(p.src) && p.src[p.i] == '=' {
			p.i++
		}
		op := p.src[start:p.i]
		kind := tokOp
		if op == "=" || op == "!" {
			kind = tokBad
		}
		p.tok = token{kind: kind, text: op, pos: start}
	case c == '-' || c == '+' || c == '.' || c >= '0' && c <= '9':
		p.i++
		for p.i < len(p.src) && (strings.ContainsRune("0123456789.eE", rune(p.src[p.i])) ||
			(p.src[p.i] == '-' || p.src[p.i] == '+') && (p.src[p.i-1] == 'e' || p.src[p.i-1] == 'E')) {
			p.i++
		}
		text := p.src[start:p.i]
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			p.tok = token{kind: tokBad, text: text, pos: start}
			return
		}
		p.tok = token{kind: tokNumber, text: text, num: f, pos: start}
	case unicode.IsLetter(rune(c)) || c == '_':
		for p.i < len(p.src) && (unicode.IsLetter(rune(p.src[p.i])) || p.src[p.i] == '_' || unicode.IsDigit(rune(p.src[p.i]))) {
			p.i++
		}
		word := p.src[start:p.i]
		t := token{text: word, pos: start}
		switch strings.ToLower(word) {
		case "value":
			t.kind = tokValue
		case "and":
			t.kind = tokAnd
		case "or":
			t.kind = tokOr
		case "not":
			t.kind = tokNot
		case "true":
			t.kind, t.num = tokNumber, 1
		case "false":
			t.kind, t.num = tokNumber, 0
		default:
			t.kind = tokBad
		}
		p.tok = t
	default:
		p.i++
		p.tok = token{kind: tokBad, text: string(c), pos: start}
	}
}

func (p *parser) or() (Cond, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tokOr {
		p.next()
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(v float64) bool { return l(v) || right(v) }
	}
	return left, nil
}

func (p *parser) and() (Cond, error) {
	left, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tokAnd {
		p.next()
		right, err := p.not()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(v float64) bool { return l(v) && right(v) }
	}
	return left, nil
}

func (p *parser) not() (Cond, error) {
	if p.tok.kind == tokNot {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		c, err := p.not()
		if err != nil {
			return nil, err
		}
		return func(v float64) bool { return !c(v) }, nil
	}
	return p.primary()
}

func (p *parser) primary() (Cond, error) {
	if p.tok.kind == tokLParen {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, p.errorf("expected ) but found %q", p.tok.text)
		}
		p.next()
		return c, nil
	}
	return p.comparison()
}

// operand is value (nil number) or a constant.
func (p *parser) operand() (*float64, error) {
	switch p.tok.kind {
	case tokValue:
		p.next()
		return nil, nil
	case tokNumber:
		n := p.tok.num
		p.next()
		return &n, nil
	}
	return nil, p.errorf("expected value or a number but found %q", p.tok.text)
}

func (p *parser) comparison() (Cond, error) {
	left, err := p.operand()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokOp {
		return nil, p.errorf("expected a comparison (< <= > >= == !=) but found %q", p.tok.text)
	}
	op := p.tok.text
	p.next()
	right, err := p.operand()
	if err != nil {
		return nil, err
	}
	if left != nil && right != nil {
		return nil, fmt.Errorf("where: comparison of two numbers: one side must be value")
	}
	cmp := compare(op)
	switch {
	case left == nil && right == nil:
		return func(v float64) bool { return cmp(v, v) }, nil
	case left == nil:
		r := *right
		return func(v float64) bool { return cmp(v, r) }, nil
	default:
		l := *left
		return func(v float64) bool { return cmp(l, v) }, nil
	}
}

func compare(op string) func(a, b float64) bool {
	switch op {
	case "<":
		return func(a, b float64) bool { return a < b }
	case "<=":
		return func(a, b float64) bool { return a <= b }
	case ">":
		return func(a, b float64) bool { return a > b }
	case ">=":
		return func(a, b float64) bool { return a >= b }
	case "==":
		return func(a, b float64) bool { return a == b }
	}
	return func(a, b float64) bool { return a != b } // "!="
}
