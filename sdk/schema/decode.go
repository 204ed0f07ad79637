package schema

import (
	"errors"
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// MaxDepth bounds how deeply blocks nest, Recursive ones included: a policy that deep is a
// mistake, and every level costs the core when it matches a request.
const MaxDepth = 32

// Decode checks body against the schema and returns its value (see the package comment for
// the value's shape). With errors the value is cty.DynamicVal; warnings come with a value.
func (b *Block) Decode(body hcl.Body, ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	return b.decode(body, ctx, "this block", body.MissingItemRange())
}

// DecodeBlock decodes a whole top-level block: it checks the labels against the Block's
// header, decodes the body, and adds the labels to the value under their names.
func (b *Block) DecodeBlock(blk *hcl.Block, ctx *hcl.EvalContext) (cty.Value, hcl.Diagnostics) {
	d := &decoder{ctx: ctx}
	d.labels(blk, b.Labels, b.LabelEnum)
	if d.diags.HasErrors() {
		return cty.DynamicVal, d.diags
	}
	val, diags := b.decode(blk.Body, ctx, fmt.Sprintf("the %q block", blk.Type), blk.DefRange)
	diags = append(d.diags, diags...)
	if diags.HasErrors() || len(b.Labels) == 0 {
		return val, diags
	}
	attrs := val.AsValueMap()
	if attrs == nil {
		attrs = map[string]cty.Value{}
	}
	for i, name := range b.Labels {
		attrs[name] = cty.StringVal(blk.Labels[i])
	}
	return cty.ObjectVal(attrs), diags
}

func (b *Block) decode(body hcl.Body, ctx *hcl.EvalContext, where string, def hcl.Range) (cty.Value, hcl.Diagnostics) {
	if err := b.Validate(); err != nil {
		return cty.DynamicVal, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid plugin schema",
			Detail:   fmt.Sprintf("The schema declared for %s is broken, so the block cannot be checked; this is a bug in the plugin: %v", where, err),
			Subject:  def.Ptr(),
		}}
	}
	d := &decoder{ctx: ctx}
	d.body(b, body, where, def, 0)
	if d.diags.HasErrors() {
		return cty.DynamicVal, d.diags
	}
	val, diags := hcldec.Decode(body, b.Spec(), ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.DynamicVal, d.diags
	}
	return fillAbsent(b, val), d.diags
}

// decoder walks a body and its nested blocks, collecting diagnostics.
type decoder struct {
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics
}

func (d *decoder) add(diag *hcl.Diagnostic) { d.diags = append(d.diags, diag) }

func (d *decoder) errorAt(rng hcl.Range, summary, detail string) {
	d.add(&hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: rng.Ptr()})
}

func (d *decoder) problemAt(rng hcl.Range, p *problem, expr hcl.Expression) {
	sev := hcl.DiagError
	if p.warning {
		sev = hcl.DiagWarning
	}
	d.add(&hcl.Diagnostic{Severity: sev, Summary: p.summary, Detail: p.detail, Subject: rng.Ptr(), Expression: expr, EvalContext: d.ctx})
}

// hclSchema is the body schema hcl checks names and label counts with.
func (b *Block) hclSchema() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, a := range b.Attributes {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a.Name, Required: a.Required})
	}
	for _, nb := range b.Blocks {
		s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: nb.Name, LabelNames: nb.Labels})
	}
	return s
}

// allowed is the sentence appended to an "unsupported" diagnostic, so the user sees the
// choices instead of guessing again.
func (b *Block) allowed(where string) string {
	var attrs, blocks []string
	for _, a := range b.Attributes {
		attrs = append(attrs, a.Name)
	}
	for _, nb := range b.Blocks {
		blocks = append(blocks, nb.Name)
	}
	switch {
	case len(attrs) == 0 && len(blocks) == 0:
		return fmt.Sprintf("Nothing is allowed inside %s.", where)
	case len(blocks) == 0:
		return fmt.Sprintf("Arguments allowed in %s: %s.", where, quoteList(attrs, "and"))
	case len(attrs) == 0:
		return fmt.Sprintf("Blocks allowed in %s: %s.", where, quoteList(blocks, "and"))
	}
	plural := func(n int, what string) string {
		if n == 1 {
			return what
		}
		return what + "s"
	}
	return fmt.Sprintf("Allowed in %s: the %s %s; the %s %s.", where, plural(len(attrs), "argument"), quoteList(attrs, "and"),
		plural(len(blocks), "block"), quoteList(blocks, "and"))
}

// Explain appends, to hcl's "Unsupported argument" and "Unsupported block type" diagnostics,
// the list of what is allowed where the mistake is. hcl already adds the closest name.
func Explain(diags hcl.Diagnostics, allowed string) {
	for _, diag := range diags {
		if diag.Summary == "Unsupported argument" || diag.Summary == "Unsupported block type" {
			diag.Detail += "\n\n" + allowed
		}
	}
}

func (d *decoder) body(b *Block, body hcl.Body, where string, def hcl.Range, depth int) {
	content, diags := body.Content(b.hclSchema())
	Explain(diags, b.allowed(where))
	d.diags = append(d.diags, diags...)

	attrs := make([]*hcl.Attribute, 0, len(content.Attributes))
	for _, a := range content.Attributes {
		attrs = append(attrs, a)
	}
	sort.Slice(attrs, func(i, j int) bool { return attrs[i].Range.Start.Byte < attrs[j].Range.Start.Byte })
	var set []*hcl.Attribute
	for _, a := range attrs {
		if d.attribute(b.attribute(a.Name), a) {
			set = append(set, a)
		}
	}

	if len(b.ExactlyOne) > 0 {
		var chosen []*hcl.Attribute
		for _, a := range set {
			if contains(b.ExactlyOne, a.Name) {
				chosen = append(chosen, a)
			}
		}
		switch {
		case len(chosen) == 0 && !diags.HasErrors():
			d.errorAt(def, "Missing required argument", fmt.Sprintf("%s needs exactly one of %s.", capitalize(where), quoteList(b.ExactlyOne, "or")))
		case len(chosen) > 1:
			for _, a := range chosen[1:] {
				d.errorAt(a.NameRange, "Conflicting arguments", fmt.Sprintf("Only one of %s may be set in %s, and %q is already set on line %d.",
					quoteList(b.ExactlyOne, "or"), where, chosen[0].Name, chosen[0].NameRange.Start.Line))
			}
		}
	}
	if b.NotEmpty && len(content.Attributes) == 0 && len(content.Blocks) == 0 && !diags.HasErrors() {
		d.errorAt(def, "Empty block", fmt.Sprintf("%s is empty, which means nothing here. %s", capitalize(where), b.allowed(where)))
	}

	for _, nb := range b.Blocks {
		var blocks []*hcl.Block
		for _, blk := range content.Blocks {
			if blk.Type == nb.Name {
				blocks = append(blocks, blk)
			}
		}
		if nb.Required && len(blocks) == 0 {
			d.errorAt(content.MissingItemRange, fmt.Sprintf("Missing %s block", nb.Name), fmt.Sprintf("%s needs a %q block.", capitalize(where), nb.Name))
		}
		if !nb.Repeated && len(blocks) > 1 {
			for _, blk := range blocks[1:] {
				d.errorAt(blk.DefRange, fmt.Sprintf("Duplicate %s block", nb.Name),
					fmt.Sprintf("Only one %q block is allowed in %s; the first is at %s.", nb.Name, where, At(blocks[0].DefRange)))
			}
			blocks = blocks[:1]
		}
		seen := map[string]*hcl.Block{}
		child := nb.Block
		if nb.Recursive {
			child = b
		}
		for _, blk := range blocks {
			d.labels(blk, nb.Labels, nb.LabelEnum)
			if nb.UniqueLabels {
				key := fmt.Sprintf("%q", blk.Labels)
				if first, dup := seen[key]; dup {
					d.errorAt(blk.DefRange, fmt.Sprintf("Duplicate %s block", nb.Name),
						fmt.Sprintf("A %q block with the labels %s is already defined at %s.", nb.Name, quoteList(blk.Labels, "and"), At(first.DefRange)))
				} else {
					seen[key] = blk
				}
			}
			if depth+1 >= MaxDepth {
				d.errorAt(blk.DefRange, "Blocks nested too deeply", fmt.Sprintf("This %q block is nested %d levels deep; the limit is %d.", nb.Name, depth+1, MaxDepth))
				continue
			}
			d.body(child, blk.Body, fmt.Sprintf("the %q block", nb.Name), blk.DefRange, depth+1)
		}
	}
}

func (b *Block) attribute(name string) *Attribute {
	for i := range b.Attributes {
		if b.Attributes[i].Name == name {
			return &b.Attributes[i]
		}
	}
	return nil
}

// labels checks a block's labels: their number (when hcl has not already), that none is
// empty, and their enums.
func (d *decoder) labels(blk *hcl.Block, names []string, enum map[string][]string) {
	if len(blk.Labels) != len(names) {
		d.errorAt(blk.DefRange, fmt.Sprintf("Wrong number of labels for %s", blk.Type),
			fmt.Sprintf("A %q block takes %d labels (%s), not %d.", blk.Type, len(names), quoteList(names, "and"), len(blk.Labels)))
		return
	}
	for i, name := range names {
		val, rng := blk.Labels[i], blk.LabelRanges[i]
		if val == "" {
			d.errorAt(rng, fmt.Sprintf("Empty %s for %s", name, blk.Type), fmt.Sprintf("The %s of a %q block cannot be empty.", name, blk.Type))
			continue
		}
		if allowed, ok := enum[name]; ok && !contains(allowed, val) {
			d.errorAt(rng, fmt.Sprintf("Invalid %s for %s", name, blk.Type),
				fmt.Sprintf("%q is not a %s of %q blocks: it must be %s.%s", val, name, blk.Type, oneOf(allowed), didYouMean(val, allowed)))
		}
	}
}

// attribute evaluates, converts and checks one attribute. It reports whether the attribute
// counts as set (null does not).
func (d *decoder) attribute(a *Attribute, attr *hcl.Attribute) bool {
	v, diags := attr.Expr.Value(d.ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return true
	}
	ty, _ := a.Type.ctyType()
	cv, err := convert.Convert(v, ty)
	if err != nil {
		rng, msg := attr.Expr.Range(), err.Error()
		var pe cty.PathError
		if errors.As(err, &pe) {
			rng = elementRange(attr.Expr, pe.Path, d.ctx)
		} else if r, m, ok := badElement(attr.Expr, v, ty, d.ctx); ok {
			// convert names the element only in its text; point at it
			rng, msg = r, m
		}
		d.add(&hcl.Diagnostic{
			Severity:    hcl.DiagError,
			Summary:     "Incorrect attribute value type",
			Detail:      fmt.Sprintf("Inappropriate value for attribute %q: %s. It must be %s.", a.Name, msg, a.Type.describe()),
			Subject:     rng.Ptr(),
			Expression:  attr.Expr,
			EvalContext: d.ctx,
		})
		return true
	}
	if cv.IsNull() {
		if a.Required {
			d.errorAt(attr.Expr.Range(), "Missing required argument", fmt.Sprintf("The argument %q is required, but it is null.", a.Name))
		}
		return false
	}
	if !cv.IsWhollyKnown() {
		return true
	}
	if !cv.Type().IsListType() && !cv.Type().IsMapType() {
		if p := checkElement(a, cv); p != nil {
			d.problemAt(attr.Expr.Range(), p, attr.Expr)
		}
		return true
	}
	elems := elementRanges(attr.Expr, cv, d.ctx)
	for it := cv.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		r := elems[k.GoString()]
		if r.value == nil {
			r = elemRange{key: attr.Expr.Range(), value: attr.Expr.Range().Ptr()}
		}
		if a.KeyCheck != CheckNone {
			if p := checkKey(a.KeyCheck, k.AsString(), a.Name); p != nil {
				d.problemAt(r.key, p, attr.Expr)
			}
		}
		if p := checkElement(a, ev); p != nil {
			d.problemAt(*r.value, p, attr.Expr)
		}
	}
	return true
}

// badElement finds the first element of a collection value that does not convert to the
// element type of ty, and where it is written.
func badElement(expr hcl.Expression, v cty.Value, ty cty.Type, ctx *hcl.EvalContext) (hcl.Range, string, bool) {
	if !ty.IsCollectionType() || v.IsNull() || !v.IsKnown() || !v.CanIterateElements() || v.Type().IsSetType() {
		return hcl.Range{}, "", false
	}
	elems := elementRanges(expr, v, ctx)
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		if _, err := convert.Convert(ev, ty.ElementType()); err != nil {
			r, ok := elems[k.GoString()]
			if !ok {
				return hcl.Range{}, "", false
			}
			what := "element " + k.GoString()
			if k.Type() == cty.String {
				what = fmt.Sprintf("element %q", k.AsString())
			} else if k.Type() == cty.Number {
				what = "element " + k.AsBigFloat().Text('f', -1)
			}
			return *r.value, fmt.Sprintf("%s: %v", what, err), true
		}
	}
	return hcl.Range{}, "", false
}

type elemRange struct {
	key   hcl.Range
	value *hcl.Range
}

// elementRanges finds where each element of a list or map literal is written, keyed by the
// element key's GoString, so a diagnostic can point at the one bad element. Values that are
// not literals get no entry and are reported at the whole expression.
func elementRanges(expr hcl.Expression, v cty.Value, ctx *hcl.EvalContext) map[string]elemRange {
	out := map[string]elemRange{}
	if v.Type().IsListType() || v.Type().IsTupleType() {
		exprs, diags := hcl.ExprList(expr)
		if diags.HasErrors() || len(exprs) != v.LengthInt() {
			return out
		}
		for i, e := range exprs {
			out[cty.NumberIntVal(int64(i)).GoString()] = elemRange{key: e.Range(), value: e.Range().Ptr()}
		}
		return out
	}
	pairs, diags := hcl.ExprMap(expr)
	if diags.HasErrors() {
		return out
	}
	for _, p := range pairs {
		k, diags := p.Key.Value(ctx)
		if diags.HasErrors() {
			continue
		}
		ks, err := convert.Convert(k, cty.String)
		if err != nil || ks.IsNull() || !ks.IsKnown() {
			continue
		}
		out[ks.GoString()] = elemRange{key: p.Key.Range(), value: p.Value.Range().Ptr()}
	}
	return out
}

// elementRange narrows a conversion error to the element it is about, when the expression is
// a literal list or map.
func elementRange(expr hcl.Expression, path cty.Path, ctx *hcl.EvalContext) hcl.Range {
	if len(path) == 0 {
		return expr.Range()
	}
	idx, ok := path[0].(cty.IndexStep)
	if !ok {
		return expr.Range()
	}
	if exprs, diags := hcl.ExprList(expr); !diags.HasErrors() && idx.Key.Type() == cty.Number {
		i, _ := idx.Key.AsBigFloat().Int64()
		if i >= 0 && int(i) < len(exprs) {
			return exprs[i].Range()
		}
	}
	if pairs, diags := hcl.ExprMap(expr); !diags.HasErrors() && idx.Key.Type() == cty.String {
		for _, p := range pairs {
			if k, diags := p.Key.Value(ctx); !diags.HasErrors() && k.Type() == cty.String && k.IsKnown() && !k.IsNull() && k.AsString() == idx.Key.AsString() {
				return p.Value.Range()
			}
		}
	}
	return expr.Range()
}

func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// fillAbsent replaces each omitted non-repeated nested block (without labels or required
// parts) by its empty form, recursively, so "absent" and "empty" decode alike.
func fillAbsent(b *Block, v cty.Value) cty.Value {
	if v.IsNull() || !v.IsKnown() || !v.Type().IsObjectType() {
		return v
	}
	attrs := v.AsValueMap()
	for _, nb := range b.Blocks {
		child := nb.Block
		if nb.Recursive {
			child = b
		}
		cur, ok := attrs[nb.Name]
		if !ok {
			continue
		}
		switch {
		case nb.Repeated:
			if cur.IsNull() || !cur.IsKnown() || cur.LengthInt() == 0 {
				continue
			}
			var elems []cty.Value
			for it := cur.ElementIterator(); it.Next(); {
				_, ev := it.Element()
				elems = append(elems, fillAbsent(child, ev))
			}
			if cur.Type().IsListType() && sameType(elems) {
				attrs[nb.Name] = cty.ListVal(elems)
			} else {
				attrs[nb.Name] = cty.TupleVal(elems)
			}
		case cur.IsNull():
			if len(nb.Labels) == 0 && !child.hasRequired() {
				empty, diags := hcldec.Decode(hcl.EmptyBody(), child.Spec(), nil)
				if !diags.HasErrors() {
					attrs[nb.Name] = fillAbsent(child, empty)
				}
			}
		default:
			attrs[nb.Name] = fillAbsent(child, cur)
		}
	}
	return cty.ObjectVal(attrs)
}

// sameType guards cty.ListVal, which panics on mixed element types; filling never changes a
// type, but a panic in the loader is too high a price for being wrong about that.
func sameType(vals []cty.Value) bool {
	for _, v := range vals[1:] {
		if !v.Type().Equals(vals[0].Type()) {
			return false
		}
	}
	return true
}

func (b *Block) hasRequired() bool {
	if b.NotEmpty || len(b.ExactlyOne) > 0 {
		return true
	}
	for _, a := range b.Attributes {
		if a.Required {
			return true
		}
	}
	for _, nb := range b.Blocks {
		if nb.Required {
			return true
		}
	}
	return false
}

// Spec converts the schema to the hcldec.Spec that builds the value. Labels become
// BlockLabelSpecs inside their block's object; a Repeated block whose body is or contains a
// Recursive one becomes a BlockTupleSpec, because its elements' types differ with depth and
// a cty list needs one element type.
func (b *Block) Spec() hcldec.Spec {
	s := &specBuilder{objects: map[*Block]hcldec.ObjectSpec{}, recursive: map[*Block]bool{}}
	return s.object(b)
}

type specBuilder struct {
	objects   map[*Block]hcldec.ObjectSpec
	recursive map[*Block]bool
}

func (s *specBuilder) object(b *Block) hcldec.ObjectSpec {
	if o, ok := s.objects[b]; ok {
		return o
	}
	o := hcldec.ObjectSpec{}
	// registered before filling, so a Recursive child can refer to the object being built
	s.objects[b] = o
	for i := range b.Attributes {
		a := &b.Attributes[i]
		ty, _ := a.Type.ctyType()
		var spec hcldec.Spec = &hcldec.AttrSpec{Name: a.Name, Type: ty, Required: a.Required}
		if a.Default != nil {
			if dv, err := a.defaultValue(); err == nil {
				spec = &hcldec.DefaultSpec{Primary: spec, Default: &hcldec.LiteralSpec{Value: dv}}
			}
		}
		o[a.Name] = spec
	}
	for _, nb := range b.Blocks {
		var inner hcldec.ObjectSpec
		if nb.Recursive {
			inner = o
		} else {
			inner = s.object(nb.Block)
			if len(nb.Labels) > 0 {
				withLabels := hcldec.ObjectSpec{}
				for k, v := range inner {
					withLabels[k] = v
				}
				for i, l := range nb.Labels {
					withLabels[l] = &hcldec.BlockLabelSpec{Index: i, Name: l}
				}
				inner = withLabels
			}
		}
		minItems := 0
		if nb.Required {
			minItems = 1
		}
		switch {
		case nb.Recursive || (nb.Repeated && s.hasRecursion(nb.Block)):
			o[nb.Name] = &hcldec.BlockTupleSpec{TypeName: nb.Name, Nested: inner, MinItems: minItems}
		case nb.Repeated:
			o[nb.Name] = &hcldec.BlockListSpec{TypeName: nb.Name, Nested: inner, MinItems: minItems}
		default:
			o[nb.Name] = &hcldec.BlockSpec{TypeName: nb.Name, Nested: inner, Required: nb.Required}
		}
	}
	return o
}

// hasRecursion reports whether b or a block below it has a Recursive nested block.
func (s *specBuilder) hasRecursion(b *Block) bool {
	if r, ok := s.recursive[b]; ok {
		return r
	}
	s.recursive[b] = false // a pointer cycle is rejected by Validate; this only ends the walk
	r := false
	for _, nb := range b.Blocks {
		if nb.Recursive || (nb.Block != nil && s.hasRecursion(nb.Block)) {
			r = true
		}
	}
	s.recursive[b] = r
	return r
}

// At renders where a range starts as file:line:col, the form diagnostics lead with, for
// messages that refer to another place ("the first is at kwarp.hcl:3:1").
func At(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// DecodeSource parses src as an HCL file and decodes each top-level block of type blockType
// with b, returning each block's JSON as the core would send it. It exists for plugin tests
// and tools that check a block without kwarp's loader; other top-level blocks are ignored.
func (b *Block) DecodeSource(filename string, src []byte, blockType string) ([][]byte, hcl.Diagnostics) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	content, _, diags := file.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: blockType, LabelNames: b.Labels}}})
	var out [][]byte
	for _, blk := range content.Blocks {
		v, d := b.DecodeBlock(blk, nil)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		data, err := ToJSON(v)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot encode the block", Detail: err.Error(), Subject: blk.DefRange.Ptr()})
			continue
		}
		out = append(out, data)
	}
	return out, diags
}
