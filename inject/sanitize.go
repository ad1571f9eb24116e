package inject

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sanitize makes untrusted experience text safe to place in a prompt as one
// line of a numbered list. It
//
//   - replaces invalid UTF-8 with U+FFFD;
//   - drops ANSI escape sequences, C0 and C1 control characters (NUL
//     included), bidirectional overrides and isolates, zero-width characters,
//     the byte-order mark and Unicode tag characters (invisible text);
//   - turns every run of whitespace, newlines included, into one space, so
//     a note can never start a line of its own (no fake list items,
//     headings or closing markers);
//   - neutralises chat-template and role markers: "<|...|>" special tokens
//     become "(|...|)", role tags such as "<system>", "</user>",
//     "<start_of_turn>" or "</reference_notes>" get their angle brackets
//     replaced by "‹" and "›", "[INST]" and "<<SYS>>" lose their brackets,
//     and "### Instruction"-style headings lose their hashes;
//   - caps the result at maxRunes runes (0 means no cap), cutting at a word
//     boundary when one is near and marking the cut with "…".
//
// The result never contains a control character, not even \n.
func Sanitize(s string, maxRunes int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = stripControls(s)
	s = neutralise(s)
	if maxRunes > 0 {
		s = truncateRunes(s, maxRunes)
	}
	return s
}

// stripControls drops escapes and invisible characters and collapses
// whitespace into single spaces.
func stripControls(s string) string {
	if plainASCII(s) {
		return s // most lessons: nothing to drop or collapse
	}
	return stripControlsSlow(s)
}

// plainASCII reports whether s is printable ASCII with single spaces
// between words, which stripControls returns unchanged.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ':
			if i == 0 || i == len(s)-1 || s[i-1] == ' ' {
				return false
			}
		case c < 0x21 || c > 0x7e:
			return false
		}
	}
	return true
}

// stripControlsSlow is stripControls rune by rune.
func stripControlsSlow(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false // a space is pending
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == 0x1b || r == 0x9b { // ESC, CSI: skip the escape sequence
			i = skipEscape(s, i, r == 0x9b)
			continue
		}
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case invisible(r):
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// skipEscape returns the index after the escape sequence whose introducer
// ended just before i. csi is true after a one-rune CSI (U+009B).
func skipEscape(s string, i int, csi bool) int {
	if !csi {
		if i >= len(s) {
			return i
		}
		switch s[i] {
		case '[':
			csi = true
			i++
		case ']', 'P', '_', '^', 'X': // OSC, DCS, APC, PM, SOS: up to BEL or ST
			i++
			for i < len(s) {
				if s[i] == 0x07 {
					return i + 1
				}
				if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
					return i + 2
				}
				i++
			}
			return i
		default: // two-character escape
			if s[i] >= 0x20 && s[i] < 0x7f {
				return i + 1
			}
			return i
		}
	}
	// CSI: parameter and intermediate bytes 0x20–0x3f, then one final byte
	// 0x40–0x7e.
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x3f {
		i++
	}
	if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
		i++
	}
	return i
}

// invisible reports runes that control layout or hide text rather than
// show it.
func invisible(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r < 0xa0: // C0, DEL, C1
		return true
	case r == 0x00ad, r == 0x061c, r == 0x180e: // soft hyphen, Arabic letter mark, Mongolian vowel separator
		return true
	case r >= 0x200b && r <= 0x200f: // zero-width space/joiners, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // bidi embeddings and overrides
		return true
	case r >= 0x2060 && r <= 0x206f: // word joiner, invisible operators, bidi isolates
		return true
	case r == 0xfeff, r >= 0xfff9 && r <= 0xfffb: // BOM, interlinear annotations
		return true
	case r >= 0xe0000 && r <= 0xe007f: // tag characters
		return true
	}
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cs, r)
}

var (
	// "<|im_start|>", "<|eot_id|>", "<|start_header_id|>" ...
	specialToken = regexp.MustCompile(`<\|([^|<>]{0,64})\|>|<\||\|>`)
	// Role and template tags, opening or closing, with or without attributes.
	roleTag = regexp.MustCompile(`(?i)<\s*/?\s*(system|user|assistant|developer|tool|tools|function|functions|` +
		`instructions?|prompt|context|human|ai|bot|model|im_start|im_end|s|start_of_turn|end_of_turn|` +
		`bos|eos|reference_notes|notes?|experiences?|message|messages|turn|role)\b[^<>]{0,128}>`)
	// Llama 2 style markers.
	instTag = regexp.MustCompile(`(?i)\[\s*/?\s*(INST|SYS)\s*\]|<<\s*/?\s*SYS\s*>>`)
	// Alpaca-style headings: "### Instruction:", "## Response".
	heading = regexp.MustCompile(`(?i)#{2,}\s*(instruction|instructions|response|system|input|user|assistant|human|context)\b`)
)

// neutralise defuses markers until none is left. One pass can create a
// marker out of the pieces around a removed one ("<<<SYS>>|" becomes "<|"),
// so it repeats; the rare input still changing after a few passes loses
// all its angle brackets.
func neutralise(s string) string {
	for range 8 {
		t := neutraliseOnce(s)
		if t == s {
			return s
		}
		s = t
	}
	return neutraliseOnce(strings.NewReplacer("<", "‹", ">", "›", "[", "(", "]", ")", "#", "").Replace(s))
}

func neutraliseOnce(s string) string {
	if strings.ContainsAny(s, "<|") {
		s = specialToken.ReplaceAllStringFunc(s, func(m string) string {
			m = strings.Replace(m, "<|", "(|", 1)
			if strings.HasSuffix(m, "|>") {
				m = m[:len(m)-2] + "|)"
			}
			return m
		})
	}
	if strings.Contains(s, "<") {
		s = roleTag.ReplaceAllStringFunc(s, func(m string) string {
			return strings.NewReplacer("<", "‹", ">", "›").Replace(m)
		})
	}
	if strings.ContainsAny(s, "[<") {
		s = instTag.ReplaceAllStringFunc(s, func(m string) string {
			return strings.NewReplacer("[", "", "]", "", "<<", "", ">>", "").Replace(m)
		})
	}
	if strings.Contains(s, "##") {
		s = heading.ReplaceAllStringFunc(s, func(m string) string {
			return strings.TrimLeft(m, "# ")
		})
	}
	return s
}

// ellipsis marks a note cut short.
const ellipsis = "…"

// truncateRunes cuts s to at most n runes, ellipsis included, preferring a
// word boundary in the last fifth.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	cut, k := 0, 0 // cut: byte index of rune n-1, so n-1 runes remain
	for i := range s {
		if k == n-1 {
			cut = i
			break
		}
		k++
	}
	return cutAt(s, cut)
}

// cutAt cuts s before byte index cut, backing up to a space within the
// last fifth, and appends the ellipsis.
func cutAt(s string, cut int) string {
	head := s[:cut]
	if sp := strings.LastIndexByte(head, ' '); sp > 0 && sp >= cut*4/5 {
		head = head[:sp]
	}
	return strings.TrimRight(head, " ") + ellipsis
}

// truncateTokens cuts s so that c counts at most n tokens, ellipsis
// included, by a binary search over rune boundaries.
func truncateTokens(s string, n int, c Counter) string {
	if n <= 0 || c.Count(s) <= n {
		return s
	}
	idx := make([]int, 0, len(s))
	for i := range s {
		idx = append(idx, i)
	}
	// Largest k whose cut fits; token counts grow with the prefix, give or
	// take a merge, so the result is checked and backed off if needed.
	lo, hi := 0, len(idx)
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if c.Count(cutAt(s, idx[mid])) <= n {
			lo = mid
		} else {
			hi = mid
		}
	}
	for ; lo >= 0; lo-- {
		if t := cutAt(s, idx[lo]); c.Count(t) <= n {
			return t
		}
	}
	return ""
}

func isLetter(r rune) bool { return unicode.IsLetter(r) }
func isDigit(r rune) bool  { return unicode.IsDigit(r) }
