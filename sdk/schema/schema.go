// Package schema is how a kwarp plugin declares the policy block it owns, and how the host
// decodes and checks the user's block with that declaration.
//
// # Why a schema language of its own
//
// A plugin is another process. The host must check the user's policy before any plugin runs
// (`kwarp verify-config` starts none), and must report every mistake with the file, line and
// column, the way the rest of the policy is reported. So the plugin cannot decode its own HCL:
// it hands the host a description of its block, and the host decodes. The description travels
// over gRPC, so it is made of plain Go structs that round-trip through encoding/json — unlike
// hcldec.Spec, which is a tree of interfaces. It is deliberately small: the types and checks a
// policy needs (strings, numbers, bools, lists and maps of them; globs, subnets, ports,
// durations, regular expressions), and nothing that would let a block's meaning depend on code.
//
// # Example
//
// The fs plugin declares
//
//	var Schema = &schema.Block{
//		Attributes: []schema.Attribute{
//			{Name: "mode", Type: schema.String, Default: "read",
//				Enum: []string{"local", "localwithoverrides", "read", "write"}},
//			{Name: "read_only", Type: schema.ListOfString, Check: schema.CheckPathGlob},
//		},
//	}
//
// and the user writes
//
//	fs {
//	  mode      = "raed"
//	  read_only = ["/etc/app/**", "/a**b"]
//	}
//
// Decode returns two diagnostics whose subjects are the values themselves, so the caret lands
// on `"raed"` (with `Did you mean "read"?`) and on `"/a**b"`, not on the attribute name or the
// whole list. On a clean block Decode returns a cty object, ToJSON turns it into
//
//	{"mode":"read","read_only":["/etc/app/**"]}
//
// and the plugin reads that into its own struct with FromJSON or Block.Unmarshal.
//
// # How a block decodes
//
// Decoding is hcldec's (Block.Spec is the hcldec.Spec), so values convert the way HCL users
// expect ("8080" is a fine number). Before hcldec runs, Decode walks the body itself to give
// better errors: unknown names list what is allowed and suggest the closest one, wrong types
// and failed checks point at the offending element of a list or map, and block-level rules
// (ExactlyOne, NotEmpty, singletons, label enums, unique labels) are enforced. hcldec only runs
// on a body that passed, so every diagnostic comes from one place.
//
// The value's shape, which is the JSON a plugin receives:
//
//   - each attribute is a key; an unset attribute is its Default, or null without one;
//   - a nested block that is not Repeated is an object, and when the user omitted it, the
//     object it would be if written empty (its defaults) — so "no outgoing block" and
//     "outgoing {}" mean the same. A nested block that has required parts, or labels, stays null
//     when omitted;
//   - a Repeated nested block is a list of objects in source order (empty when omitted);
//   - a block's labels become keys of its object, named by Labels, so
//     `filter "remote" { ... }` decodes as {"kind":"remote", ...};
//   - a Recursive nested block has the same body as the block that contains it, which is how
//     arbitrarily nested match trees (`any_of { all_of { ... } }`) are declared.
//
// A Block is also the unit a plugin registers at the top level of a policy file; there its
// header fields (Labels, LabelEnum, Repeated, UniqueLabels) say how the block is written:
// `steal "http" "mine" { ... }` is a Block with Labels ["kind", "name"] and Repeated set.
//
// Nothing here imports kwarp's core, config or CLI: third-party plugins import this package.
package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Type is an attribute's value type, written as HCL writes types.
type Type string

// The value types a policy attribute can have.
const (
	String       Type = "string"
	Number       Type = "number"
	Bool         Type = "bool"
	ListOfString Type = "list(string)"
	ListOfNumber Type = "list(number)"
	MapOfString  Type = "map(string)"
	MapOfNumber  Type = "map(number)"
)

// Check is a validation of an attribute's value beyond its type. On a list or map it applies
// to every element; KeyCheck applies one to a map's keys.
type Check string

// The checks. Each is named for what it accepts.
const (
	CheckNone Check = ""
	// CheckPathGlob: an absolute path glob, or one starting with "**" (see sdk/glob).
	CheckPathGlob Check = "path_glob"
	// CheckHostGlob: a DNS name glob (see sdk/glob).
	CheckHostGlob Check = "host_glob"
	// CheckEnvGlob: an environment variable name glob (see sdk/glob).
	CheckEnvGlob Check = "env_glob"
	// CheckEnvName: an environment variable name, no wildcards (for keys of an override map).
	CheckEnvName Check = "env_name"
	// CheckCIDR: a subnet such as "10.96.0.0/12" or "fd00::/8".
	CheckCIDR Check = "cidr"
	// CheckPort: a whole number from 1 to 65535 (on a map key: its decimal text).
	CheckPort Check = "port"
	// CheckPortOrZero: a port, or 0 for "pick one".
	CheckPortOrZero Check = "port_or_zero"
	// CheckDuration: a Go duration such as "30s" or "1h30m", not negative; "0" is allowed.
	CheckDuration Check = "duration"
	// CheckRegex: a regular expression that compiles (Go RE2 syntax).
	CheckRegex Check = "regex"
	// CheckNonEmpty: not "" (on a list or map: no element is ""; an empty list is fine).
	CheckNonEmpty Check = "non_empty"
	// CheckSHA256: 64 hexadecimal digits.
	CheckSHA256 Check = "sha256"
)

// Attribute is one `name = value` of a block.
type Attribute struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
	Doc  string `json:"doc,omitempty"`
	// Required attributes must be set; they take no Default.
	Required bool `json:"required,omitempty"`
	// Default is the value when the attribute is unset: a Go string, bool, number, slice or
	// map that converts to Type. nil means no default (the value is null).
	Default any `json:"default"`
	// Enum lists the allowed values of a string (or of each element of a list or map of
	// strings).
	Enum []string `json:"enum,omitempty"`
	// Check validates the value (each element of a list or map).
	Check Check `json:"check,omitempty"`
	// KeyCheck validates each key of a map.
	KeyCheck Check `json:"key_check,omitempty"`
}

// NestedBlock is a block inside a block: `outgoing { ... }`, `filter "remote" { ... }`.
type NestedBlock struct {
	Name string `json:"name"`
	Doc  string `json:"doc,omitempty"`
	// Labels name the block's labels, in order; each becomes a key of the block's value.
	Labels []string `json:"labels,omitempty"`
	// LabelEnum restricts a label (by its name in Labels) to a list of values.
	LabelEnum map[string][]string `json:"label_enum,omitempty"`
	// Repeated blocks may appear any number of times and decode to a list; otherwise the
	// block may appear once and decodes to an object.
	Repeated bool `json:"repeated,omitempty"`
	// UniqueLabels forbids two repeated blocks with the same labels.
	UniqueLabels bool `json:"unique_labels,omitempty"`
	// Required blocks must appear (at least once).
	Required bool `json:"required,omitempty"`
	// Recursive says the block's body is the body of the block containing it (Block is then
	// nil). It must be Repeated and have no labels.
	Recursive bool `json:"recursive,omitempty"`
	// Block is the body's schema.
	Block *Block `json:"block,omitempty"`
}

// Block is the schema of a block's body. When a plugin registers a Block as a top-level policy
// block, the header fields say how that block is written; inside a NestedBlock they must be
// empty, since the NestedBlock carries its own header.
type Block struct {
	Doc string `json:"doc,omitempty"`

	// Header of a top-level block: see NestedBlock's fields of the same names.
	Labels       []string            `json:"labels,omitempty"`
	LabelEnum    map[string][]string `json:"label_enum,omitempty"`
	Repeated     bool                `json:"repeated,omitempty"`
	UniqueLabels bool                `json:"unique_labels,omitempty"`

	Attributes []Attribute   `json:"attributes,omitempty"`
	Blocks     []NestedBlock `json:"blocks,omitempty"`

	// ExactlyOne names attributes of which exactly one must be set, as in
	// `header "x" { regex = "..." }` where regex, exact and prefix are alternatives.
	ExactlyOne []string `json:"exactly_one,omitempty"`
	// NotEmpty requires at least one attribute or block in the body: for a block whose empty
	// form would mean nothing useful (an empty any_of matches nothing).
	NotEmpty bool `json:"not_empty,omitempty"`
}

// ctyType is the cty type of an attribute type.
func (t Type) ctyType() (cty.Type, bool) {
	switch t {
	case String:
		return cty.String, true
	case Number:
		return cty.Number, true
	case Bool:
		return cty.Bool, true
	case ListOfString:
		return cty.List(cty.String), true
	case ListOfNumber:
		return cty.List(cty.Number), true
	case MapOfString:
		return cty.Map(cty.String), true
	case MapOfNumber:
		return cty.Map(cty.Number), true
	}
	return cty.NilType, false
}

// elem is the type of a value, or of a collection's elements.
func (t Type) elem() Type {
	switch t {
	case ListOfString, MapOfString:
		return String
	case ListOfNumber, MapOfNumber:
		return Number
	}
	return t
}

func (t Type) isMap() bool { return t == MapOfString || t == MapOfNumber }

// describe names the type for a user: "a list of strings".
func (t Type) describe() string {
	switch t {
	case String:
		return "a string"
	case Number:
		return "a number"
	case Bool:
		return "true or false"
	case ListOfString:
		return `a list of strings, such as ["a", "b"]`
	case ListOfNumber:
		return "a list of numbers, such as [80, 443]"
	case MapOfString:
		return `a map of strings, such as { KEY = "value" }`
	case MapOfNumber:
		return `a map of numbers, such as { "8080" = 3000 }`
	}
	return string(t)
}

// stringCheck reports whether c applies to string values; numberCheck to numbers.
func stringCheck(c Check) bool {
	switch c {
	case CheckPathGlob, CheckHostGlob, CheckEnvGlob, CheckEnvName, CheckCIDR, CheckDuration, CheckRegex, CheckSHA256:
		return true
	}
	return false
}

func numberCheck(c Check) bool { return c == CheckPort || c == CheckPortOrZero }

// Validate reports mistakes in the schema itself: the plugin author's, not the user's.
// Decode validates first and turns an error here into a diagnostic.
func (b *Block) Validate() error {
	if b == nil {
		return errors.New("schema: nil block")
	}
	var errs []error
	b.validate("", true, map[*Block]bool{}, &errs)
	return errors.Join(errs...)
}

func (b *Block) validate(path string, top bool, ancestors map[*Block]bool, errs *[]error) {
	where := "block"
	if path != "" {
		where = fmt.Sprintf("block %q", path)
	}
	fail := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("schema: %s: %s", where, fmt.Sprintf(format, args...)))
	}
	ancestors[b] = true
	defer delete(ancestors, b)

	if top {
		validateHeader(b.Labels, b.LabelEnum, fail)
	} else if len(b.Labels) > 0 || len(b.LabelEnum) > 0 || b.Repeated || b.UniqueLabels {
		fail("labels and repetition of a nested block belong on its NestedBlock, not on its Block")
	}
	names := map[string]bool{}
	claim := func(what, name string) {
		if !hclsyntax.ValidIdentifier(name) {
			fail("%s name %q is not an HCL identifier", what, name)
		}
		if names[name] {
			fail("the name %q is used twice", name)
		}
		names[name] = true
	}
	for _, l := range b.Labels {
		claim("label", l)
	}
	attrs := map[string]*Attribute{}
	for i := range b.Attributes {
		a := &b.Attributes[i]
		claim("attribute", a.Name)
		attrs[a.Name] = a
		if err := a.validate(); err != nil {
			fail("attribute %q: %v", a.Name, err)
		}
	}
	for _, nb := range b.Blocks {
		claim("block", nb.Name)
	}
	if len(b.ExactlyOne) == 1 {
		fail("ExactlyOne needs at least two attributes")
	}
	for _, n := range b.ExactlyOne {
		switch a := attrs[n]; {
		case a == nil:
			fail("ExactlyOne names %q, which is not an attribute", n)
		case a.Required || a.Default != nil:
			fail("ExactlyOne names %q, which is required or has a default, so it is always set", n)
		}
	}
	for _, nb := range b.Blocks {
		sub := nb.Name
		if path != "" {
			sub = path + "." + nb.Name
		}
		validateHeader(nb.Labels, nb.LabelEnum, func(format string, args ...any) {
			fail("block %q: %s", nb.Name, fmt.Sprintf(format, args...))
		})
		if nb.UniqueLabels && (!nb.Repeated || len(nb.Labels) == 0) {
			fail("block %q: UniqueLabels needs a Repeated block with labels", nb.Name)
		}
		switch {
		case nb.Recursive && nb.Block != nil:
			fail("block %q: a Recursive block takes no Block: its body is its parent's", nb.Name)
		case nb.Recursive && (!nb.Repeated || len(nb.Labels) > 0 || nb.Required):
			fail("block %q: a Recursive block must be Repeated, optional and without labels", nb.Name)
		case nb.Recursive:
		case nb.Block == nil:
			fail("block %q has no Block", nb.Name)
		case ancestors[nb.Block]:
			fail("block %q contains itself; declare the inner one Recursive", nb.Name)
		default:
			for _, l := range nb.Labels {
				if nb.Block.has(l) {
					fail("block %q: label %q has the name of an attribute or block of its body", nb.Name, l)
				}
			}
			nb.Block.validate(sub, false, ancestors, errs)
		}
	}
}

func validateHeader(labels []string, enum map[string][]string, fail func(string, ...any)) {
	seen := map[string]bool{}
	for _, l := range labels {
		if !hclsyntax.ValidIdentifier(l) {
			fail("label name %q is not an HCL identifier", l)
		}
		if seen[l] {
			fail("label %q is declared twice", l)
		}
		seen[l] = true
	}
	for l, vals := range enum {
		if !seen[l] {
			fail("LabelEnum names %q, which is not a label", l)
		}
		if len(vals) == 0 {
			fail("LabelEnum for %q allows nothing", l)
		}
	}
}

func (b *Block) has(name string) bool {
	for _, a := range b.Attributes {
		if a.Name == name {
			return true
		}
	}
	for _, nb := range b.Blocks {
		if nb.Name == name {
			return true
		}
	}
	return false
}

func (a *Attribute) validate() error {
	if _, ok := a.Type.ctyType(); !ok {
		return fmt.Errorf("unknown type %q", a.Type)
	}
	el := a.Type.elem()
	switch {
	case a.Check == CheckNone, a.Check == CheckNonEmpty:
	case stringCheck(a.Check) && el != String, numberCheck(a.Check) && el != Number:
		return fmt.Errorf("check %q does not apply to %s", a.Check, a.Type)
	case !stringCheck(a.Check) && !numberCheck(a.Check):
		return fmt.Errorf("unknown check %q", a.Check)
	}
	if a.KeyCheck != CheckNone {
		if !a.Type.isMap() {
			return fmt.Errorf("key check %q on %s, which has no keys", a.KeyCheck, a.Type)
		}
		if !stringCheck(a.KeyCheck) && !numberCheck(a.KeyCheck) && a.KeyCheck != CheckNonEmpty {
			return fmt.Errorf("unknown key check %q", a.KeyCheck)
		}
	}
	if len(a.Enum) > 0 && el != String {
		return fmt.Errorf("an enum needs string values, not %s", a.Type)
	}
	if a.Default == nil {
		return nil
	}
	if a.Required {
		return errors.New("a required attribute cannot have a default")
	}
	v, err := a.defaultValue()
	if err != nil {
		return err
	}
	var probs []*problem
	forEachElement(a, v, func(_ string, ev cty.Value) {
		if p := checkElement(a, ev); p != nil && !p.warning {
			probs = append(probs, p)
		}
	})
	if len(probs) > 0 {
		return fmt.Errorf("the default fails its own checks: %s", probs[0].detail)
	}
	return nil
}

// defaultValue converts Default, which may have been through JSON (numbers as float64, lists
// as []any), to the attribute's type.
func (a *Attribute) defaultValue() (cty.Value, error) {
	ty, _ := a.Type.ctyType()
	raw, err := goToCty(reflect.ValueOf(a.Default))
	if err != nil {
		return cty.NilVal, fmt.Errorf("default: %w", err)
	}
	v, err := convert.Convert(raw, ty)
	if err != nil {
		return cty.NilVal, fmt.Errorf("default %#v is not %s: %w", a.Default, a.Type, err)
	}
	return v, nil
}

func goToCty(v reflect.Value) (cty.Value, error) {
	for v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return cty.NullVal(cty.DynamicPseudoType), nil
		}
		v = v.Elem()
	}
	if n, ok := v.Interface().(json.Number); ok {
		return cty.ParseNumberVal(string(n))
	}
	switch v.Kind() {
	case reflect.String:
		return cty.StringVal(v.String()), nil
	case reflect.Bool:
		return cty.BoolVal(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return cty.NumberIntVal(v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return cty.NumberUIntVal(v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return cty.NumberVal(new(big.Float).SetFloat64(v.Float())), nil
	case reflect.Slice, reflect.Array:
		elems := make([]cty.Value, v.Len())
		for i := range elems {
			e, err := goToCty(v.Index(i))
			if err != nil {
				return cty.NilVal, err
			}
			elems[i] = e
		}
		return cty.TupleVal(elems), nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return cty.NilVal, fmt.Errorf("map keys must be strings, not %s", v.Type().Key())
		}
		attrs := map[string]cty.Value{}
		for _, k := range v.MapKeys() {
			e, err := goToCty(v.MapIndex(k))
			if err != nil {
				return cty.NilVal, err
			}
			attrs[k.String()] = e
		}
		return cty.ObjectVal(attrs), nil
	}
	return cty.NilVal, fmt.Errorf("a %s cannot be a policy value", v.Type())
}

// ToJSON renders a decoded value as plain JSON, the form the core sends a plugin.
func ToJSON(v cty.Value) ([]byte, error) {
	if !v.IsWhollyKnown() {
		return nil, errors.New("schema: the value is not fully known, so it has no JSON form")
	}
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return nil, fmt.Errorf("schema: render value as JSON: %w", err)
	}
	return b, nil
}

// FromJSON reads a block's JSON into a Go struct. Unknown keys are an error: they mean the
// struct and the schema drifted apart, which a plugin's tests should catch.
func FromJSON(data []byte, out any) error {
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("schema: decode block JSON into %T: %w", out, err)
	}
	return nil
}

// Defaults is the value of the block written empty: what a plugin should assume when the user
// wrote no block at all. Diagnostics are errors when the block has required parts.
func (b *Block) Defaults() (cty.Value, hcl.Diagnostics) {
	return b.Decode(hcl.EmptyBody(), nil)
}

// Unmarshal reads a block's JSON into out; empty data means the user wrote no block, and out
// gets the Defaults.
func (b *Block) Unmarshal(data []byte, out any) error {
	if len(data) == 0 {
		v, diags := b.Defaults()
		if diags.HasErrors() {
			return fmt.Errorf("schema: the block has no defaults: %w", diags)
		}
		var err error
		if data, err = ToJSON(v); err != nil {
			return err
		}
	}
	return FromJSON(data, out)
}

// quoteList renders names for a message: "a", "b" or "c".
func quoteList(names []string, conj string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " " + conj + " " + q[len(q)-1]
}
