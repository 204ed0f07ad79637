package filter

import (
	"encoding/binary"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Budget of one intersection search: past it the answer is "undecided", which Overlap takes
// as an overlap.
const (
	maxStates = 4096
	maxSteps  = 1 << 20 // states × rune classes
)

// intersect reports whether one string matches every matcher, and gives such a string. It
// decides exactly (up to the budget) for exact, prefix and regular expressions built from
// literals, classes, repetition, alternation and the text anchors ^ $ \A \z; decided is
// false for a regex with a line anchor ((?m)^, (?m)$) or a word boundary (\b, \B), and when
// the search outgrows the budget.
func intersect(ms []*matcher) (example string, sat, decided bool) {
	var rest []*matcher
	for _, m := range ms {
		switch m.kind {
		case exactString:
			// an exact value fixes the string: the others either match it or not
			for _, o := range ms {
				if !o.match(m.s) {
					return "", false, true
				}
			}
			return m.s, true, true
		case anyString:
		default:
			rest = append(rest, m)
		}
	}
	if len(rest) == 0 {
		return "", true, true
	}
	// prefixes alone: compatible when each is a prefix of the longest
	longest, onlyPrefixes := "", true
	for _, m := range rest {
		if m.kind != prefixString {
			onlyPrefixes = false
			break
		}
		if len(m.s) > len(longest) {
			longest = m.s
		}
	}
	if onlyPrefixes {
		for _, m := range rest {
			if !strings.HasPrefix(longest, m.s) {
				return "", false, true
			}
		}
		return longest, true, true
	}
	progs := make([]*syntax.Prog, 0, len(rest))
	for _, m := range rest {
		p, ok := fullMatchProg(m)
		if !ok {
			return "", false, false
		}
		progs = append(progs, p)
	}
	return searchProduct(progs)
}

// fullMatchProg compiles a matcher as a program that must consume the whole string: a
// prefix p is p(?s:.*) and an unanchored regex r is (?s:.*)r(?s:.*), with r's own ^ and $
// left as assertions on the position.
func fullMatchProg(m *matcher) (*syntax.Prog, bool) {
	dotStar := &syntax.Regexp{Op: syntax.OpStar, Sub: []*syntax.Regexp{{Op: syntax.OpAnyChar}}}
	var re *syntax.Regexp
	switch m.kind {
	case prefixString:
		re = &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{
			{Op: syntax.OpLiteral, Rune: []rune(m.s)}, dotStar}}
	case regexString:
		r, err := syntax.Parse(m.s, syntax.Perl)
		if err != nil {
			return nil, false
		}
		re = &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{dotStar, r, dotStar}}
	default:
		return nil, false
	}
	p, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, false
	}
	return p, true
}

// product is the search over tuples of NFA states, one set per program, all reading the
// same string.
type product struct {
	progs   []*syntax.Prog
	classes []rune // one rune standing for each class of runes no program tells apart
	bad     bool   // a program uses an assertion that is not modelled
	stack   []uint32
	seen    []bool
}

// state holds, per program, the pcs the next rune is offered to (before the ε-closure).
type state struct {
	entry   [][]uint32
	atStart bool
	parent  int
	via     rune
}

func searchProduct(progs []*syntax.Prog) (string, bool, bool) {
	p := &product{progs: progs, classes: runeClasses(progs)}
	start := state{atStart: true, parent: -1}
	for _, pr := range progs {
		start.entry = append(start.entry, []uint32{uint32(pr.Start)})
	}
	states := []state{start}
	index := map[string]int{p.key(&start): 0}
	steps := 0
	for i := 0; i < len(states); i++ {
		s := states[i]
		accept := true
		cur := make([][]uint32, len(progs))
		for k := range progs {
			cur[k] = p.closure(k, s.entry[k], s.atStart, false)
			if accept && !p.matches(k, s.entry[k], s.atStart) {
				accept = false
			}
		}
		if p.bad {
			return "", false, false
		}
		if accept {
			return p.example(states, i), true, true
		}
		for _, c := range p.classes {
			steps++
			if steps > maxSteps {
				return "", false, false
			}
			next := state{entry: make([][]uint32, len(progs)), parent: i, via: c}
			dead := false
			for k, pr := range progs {
				for _, pc := range cur[k] {
					in := &pr.Inst[pc]
					if consumes(in, c) {
						next.entry[k] = append(next.entry[k], in.Out)
					}
				}
				if len(next.entry[k]) == 0 {
					dead = true
					break
				}
				slices.Sort(next.entry[k])
				next.entry[k] = slices.Compact(next.entry[k])
			}
			if dead {
				continue
			}
			key := p.key(&next)
			if _, ok := index[key]; ok {
				continue
			}
			if len(states) >= maxStates {
				return "", false, false
			}
			index[key] = len(states)
			states = append(states, next)
		}
	}
	return "", false, true
}

func (p *product) key(s *state) string {
	b := make([]byte, 1, 64)
	if s.atStart {
		b[0] = 1
	}
	for _, e := range s.entry {
		b = binary.AppendUvarint(b, uint64(len(e)))
		for _, pc := range e {
			b = binary.AppendUvarint(b, uint64(pc))
		}
	}
	return string(b)
}

func (p *product) example(states []state, i int) string {
	var rs []rune
	for ; states[i].parent >= 0; i = states[i].parent {
		rs = append(rs, states[i].via)
	}
	slices.Reverse(rs)
	return string(rs)
}

// closure follows the ε-transitions of program k from pcs and returns the pcs of the
// instructions that consume a rune (and Match).
func (p *product) closure(k int, pcs []uint32, atStart, atEnd bool) []uint32 {
	prog := p.progs[k]
	if len(p.seen) < len(prog.Inst) {
		p.seen = make([]bool, len(prog.Inst))
	}
	seen := p.seen[:len(prog.Inst)]
	clear(seen)
	var out []uint32
	stack := append(p.stack[:0], pcs...)
	for len(stack) > 0 {
		pc := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[pc] {
			continue
		}
		seen[pc] = true
		in := &prog.Inst[pc]
		switch in.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, in.Out, in.Arg)
		case syntax.InstNop, syntax.InstCapture:
			stack = append(stack, in.Out)
		case syntax.InstEmptyWidth:
			op := syntax.EmptyOp(in.Arg)
			if op&^(syntax.EmptyBeginText|syntax.EmptyEndText) != 0 {
				p.bad = true
				continue
			}
			if op&syntax.EmptyBeginText != 0 && !atStart || op&syntax.EmptyEndText != 0 && !atEnd {
				continue
			}
			stack = append(stack, in.Out)
		case syntax.InstMatch, syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			out = append(out, pc)
		}
	}
	p.stack = stack
	return out
}

func (p *product) matches(k int, pcs []uint32, atStart bool) bool {
	for _, pc := range p.closure(k, pcs, atStart, true) {
		if p.progs[k].Inst[pc].Op == syntax.InstMatch {
			return true
		}
	}
	return false
}

func consumes(in *syntax.Inst, r rune) bool {
	switch in.Op {
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	case syntax.InstRune, syntax.InstRune1:
		return in.MatchRune(r)
	}
	return false
}

// runeClasses splits the runes into intervals that every instruction of every program
// either matches whole or not at all, and picks a readable rune in each.
func runeClasses(progs []*syntax.Prog) []rune {
	bounds := map[rune]bool{0: true, utf8.MaxRune + 1: true, '\n': true, '\n' + 1: true}
	add := func(lo, hi rune) {
		bounds[lo] = true
		bounds[hi+1] = true
	}
	for _, pr := range progs {
		for i := range pr.Inst {
			in := &pr.Inst[i]
			switch in.Op {
			case syntax.InstRune1:
				add(in.Rune[0], in.Rune[0])
			case syntax.InstRune:
				if len(in.Rune) == 1 {
					r0 := in.Rune[0]
					add(r0, r0)
					if syntax.Flags(in.Arg)&syntax.FoldCase != 0 {
						for r := unicode.SimpleFold(r0); r != r0; r = unicode.SimpleFold(r) {
							add(r, r)
						}
					}
					continue
				}
				for j := 0; j+1 < len(in.Rune); j += 2 {
					add(in.Rune[j], in.Rune[j+1])
				}
			}
		}
	}
	bs := make([]rune, 0, len(bounds))
	for b := range bounds {
		bs = append(bs, b)
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i] < bs[j] })
	classes := make([]rune, 0, len(bs)-1)
	for i := 0; i+1 < len(bs); i++ {
		classes = append(classes, readable(bs[i], bs[i+1]-1))
	}
	return classes
}

// readable picks a rune of [lo, hi] that reads well in a message.
func readable(lo, hi rune) rune {
	for _, r := range "a0A-/_.x" {
		if lo <= r && r <= hi {
			return r
		}
	}
	if lo <= '~' && hi >= '!' {
		return max(lo, '!')
	}
	return lo
}
