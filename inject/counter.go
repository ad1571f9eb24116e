package inject

import (
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// Counter counts tokens the way a model's tokenizer would. Implementations
// are safe for concurrent use.
type Counter interface {
	Count(s string) int
}

// Encoding names of the OpenAI tokenizers this package embeds.
const (
	O200kBase  = "o200k_base"
	Cl100kBase = "cl100k_base"
)

func init() {
	// The BPE tables are embedded in the binary (tiktoken-go-loader); the
	// default loader would download them at run time, which dso never does.
	tiktoken.SetBpeLoader(tiktoken_loader.NewOfflineLoader())
}

// CounterFor returns the token counter for a model name: the exact BPE
// tokenizer for OpenAI model families (o200k_base for gpt-4o, gpt-4.1,
// gpt-4.5, gpt-5, gpt-oss, o1/o3/o4 and later; cl100k_base for gpt-4,
// gpt-3.5 and OpenAI embedding models), and Heuristic for every other
// model. A provider prefix such as "openai/" or "azure/" is ignored. The
// returned counters are shared and their tables are loaded on first use.
func CounterFor(model string) Counter {
	if enc := EncodingFor(model); enc != "" {
		if c := tiktokenCounter(enc); c != nil {
			return c
		}
	}
	return Heuristic{}
}

// EncodingFor returns the OpenAI encoding used by model, or "" when the
// model is not a known OpenAI family.
func EncodingFor(model string) string {
	m := strings.ToLower(strings.TrimSpace(model))
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:]
	}
	switch {
	case strings.HasPrefix(m, "gpt-4o"), strings.HasPrefix(m, "gpt-4.1"), strings.HasPrefix(m, "gpt-4.5"),
		strings.HasPrefix(m, "gpt-5"), strings.HasPrefix(m, "gpt-oss"), strings.HasPrefix(m, "chatgpt-"),
		strings.HasPrefix(m, "o1"), strings.HasPrefix(m, "o3"), strings.HasPrefix(m, "o4"),
		strings.HasPrefix(m, "codex-"):
		return O200kBase
	case strings.HasPrefix(m, "gpt-4"), strings.HasPrefix(m, "gpt-3.5"), strings.HasPrefix(m, "gpt-35"),
		strings.HasPrefix(m, "text-embedding-3"), strings.HasPrefix(m, "text-embedding-ada-002"):
		return Cl100kBase
	}
	return ""
}

// bpeCounter counts with an OpenAI tokenizer. Encoding is slow (a
// backtracking regular expression splits the text first: about 100 µs
// for a short lesson), and the same lessons are counted request after
// request, so counts of texts up to maxCachedText bytes are kept.
type bpeCounter struct {
	enc  *tiktoken.Tiktoken
	seen *lru.Cache[string, int]
}

// Counts kept per encoding, and the longest text kept (the cache holds at
// most about 16 MiB of text).
const (
	countCacheSize = 4096
	maxCachedText  = 4 << 10
)

// Count returns the number of tokens of s, treating special-token text
// such as "<|endoftext|>" as ordinary text (which is what an API does with
// message content).
func (c bpeCounter) Count(s string) int {
	if len(s) > maxCachedText {
		return len(c.enc.EncodeOrdinary(s))
	}
	if n, ok := c.seen.Get(s); ok {
		return n
	}
	n := len(c.enc.EncodeOrdinary(s))
	c.seen.Add(strings.Clone(s), n)
	return n
}

// ReadyCounterFor is CounterFor for the request path: it never waits for a
// tokenizer's tables (about 14 MiB each, 0.1-0.2 s to load). Where they
// are not loaded yet it starts loading them in the background and returns
// Heuristic, which counts high, so the budget holds meanwhile; a process
// whose clients never name an OpenAI model never loads them.
func ReadyCounterFor(model string) Counter {
	if e, ok := encodings[EncodingFor(model)]; ok {
		if c, ok := e.ready(); ok && c != nil {
			return c
		}
	}
	return Heuristic{}
}

// lazyEncoding loads one encoding's tables once, on first use.
type lazyEncoding struct {
	name    string
	once    sync.Once
	c       Counter
	started atomic.Bool // a background load was started
	done    atomic.Bool // c is set
}

func (e *lazyEncoding) get() Counter {
	e.once.Do(func() {
		e.c = loadBPE(e.name)
		e.done.Store(true)
	})
	return e.c
}

// ready returns the counter if it is loaded, and otherwise starts loading
// it (once) without waiting.
func (e *lazyEncoding) ready() (Counter, bool) {
	if e.done.Load() {
		return e.c, true
	}
	if e.started.CompareAndSwap(false, true) {
		go e.get()
	}
	return nil, false
}

var encodings = map[string]*lazyEncoding{
	O200kBase:  {name: O200kBase},
	Cl100kBase: {name: Cl100kBase},
}

func loadBPE(name string) Counter {
	enc, err := tiktoken.GetEncoding(name)
	if err != nil {
		// Embedded data cannot be missing in a built binary; fall back
		// rather than fail a request if it somehow is.
		return nil
	}
	seen, err := lru.New[string, int](countCacheSize)
	if err != nil {
		return nil
	}
	return bpeCounter{enc: enc, seen: seen}
}

// tiktokenCounter returns the shared counter for an encoding, or nil.
func tiktokenCounter(name string) Counter {
	if e, ok := encodings[name]; ok {
		return e.get()
	}
	return nil
}

// Heuristic estimates tokens without a vocabulary, erring high so that a
// budget counted with it is rarely exceeded: a run of ASCII letters
// counts one token per 2.5 letters, a run of digits one per 2 digits (plus
// one for a space before it), every other printable ASCII character one token, a
// non-ASCII rune one token below U+2E80, 1.5 tokens for CJK and later
// scripts, 3 tokens above U+FFFF (emoji), every newline one token, and
// every run of two or more spaces or tabs one token. On English prose it
// counts about 1.3 to 2 times what cl100k_base and o200k_base count; for
// Llama, Mistral, Qwen or Gemma tokenizers it is an estimate that stays
// above the real count for prose and code.
type Heuristic struct{}

// Count returns the estimated token count of s.
func (Heuristic) Count(s string) int {
	// Counted in half tokens.
	half, letters, digits, blanks := 0, 0, 0, 0
	flush := func() {
		half += 2 * ((2*letters+4)/5 + (digits+1)/2) // whole tokens per run
		letters, digits = 0, 0
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b >= utf8.RuneSelf {
			flush()
			blanks = 0
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r > 0xffff:
				half += 6
			case r >= 0x2e80:
				half += 3
			default:
				half += 2
			}
			i += size
			continue
		}
		i++
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z':
			if digits > 0 {
				flush()
			}
			letters++
			blanks = 0
			continue
		case '0' <= b && b <= '9':
			if letters > 0 {
				flush()
			}
			if digits == 0 && blanks > 0 {
				half += 2 // a space before a number is a token of its own
			}
			digits++
			blanks = 0
			continue
		case b == ' ' || b == '\t':
			flush()
			blanks++
			if blanks == 2 {
				half += 2
			}
			continue
		}
		flush()
		blanks = 0
		half += 2 // newline, punctuation, control
	}
	flush()
	return (half + 1) / 2
}

var (
	_ Counter = Heuristic{}
	_ Counter = bpeCounter{}
)
