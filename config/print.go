package config

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// Print writes diagnostics for a person at a terminal: a compiler-style first line with
// file:line:col (which editors and CI annotators parse), then Terraform's layout — where, the
// source line with a caret under the offending value, and the detail:
//
//	kwarp.hcl:3:10: error: Invalid value for "mode"
//
//	  on kwarp.hcl line 3, in fs:
//	     3:   mode = "raed"
//	                 ^^^^^^
//
//	"raed" is not allowed here: ...
//
// hcl.NewDiagnosticTextWriter has the layout but neither the file:line:col line nor a caret
// (it marks the subject only with terminal colours), so this writes its own.
func Print(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics) error {
	var buf bytes.Buffer
	for _, d := range diags {
		writeDiagnostic(&buf, files, d)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("print diagnostics: %w", err)
	}
	return nil
}

func writeDiagnostic(w *bytes.Buffer, files map[string]*hcl.File, d *hcl.Diagnostic) {
	sev := "error"
	if d.Severity == hcl.DiagWarning {
		sev = "warning"
	}
	s := d.Subject
	if s == nil {
		fmt.Fprintf(w, "%s: %s\n", sev, d.Summary)
	} else {
		fmt.Fprintf(w, "%s:%d:%d: %s: %s\n", s.Filename, s.Start.Line, s.Start.Column, sev, d.Summary)
		writeSnippet(w, files[s.Filename], *s)
	}
	if d.Detail != "" {
		fmt.Fprintf(w, "\n%s\n", d.Detail)
	}
	w.WriteByte('\n')
}

// writeSnippet prints the subject's first line with a caret under the subject (to the end of
// that line when the subject spans lines).
func writeSnippet(w *bytes.Buffer, file *hcl.File, s hcl.Range) {
	var where string
	if file != nil {
		if cs, ok := file.Nav.(interface{ ContextString(int) string }); ok {
			if c := cs.ContextString(s.Start.Byte); c != "" {
				where = ", in " + c
			}
		}
	}
	fmt.Fprintf(w, "\n  on %s line %d%s:\n", s.Filename, s.Start.Line, where)
	if file == nil || s.Start.Byte < 0 || s.Start.Byte > len(file.Bytes) {
		w.WriteString("  (source not available)\n")
		return
	}
	src := file.Bytes
	start := bytes.LastIndexByte(src[:s.Start.Byte], '\n') + 1
	end := len(src)
	if i := bytes.IndexByte(src[s.Start.Byte:], '\n'); i >= 0 {
		end = s.Start.Byte + i
	}
	line := strings.TrimRight(string(src[start:end]), "\r")
	fmt.Fprintf(w, "%6d: %s\n", s.Start.Line, line)

	// the pad keeps the line's tabs so the caret lines up however tabs are shown
	var pad strings.Builder
	for _, r := range string(src[start:s.Start.Byte]) {
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
	}
	hiEnd := min(max(s.End.Byte, s.Start.Byte), start+len(line))
	n := utf8.RuneCount(src[s.Start.Byte:max(hiEnd, s.Start.Byte)])
	fmt.Fprintf(w, "%6s  %s%s\n", "", pad.String(), strings.Repeat("^", max(n, 1)))
}
