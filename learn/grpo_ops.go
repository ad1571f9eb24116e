package learn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// OpKind is what an operation does to the library.
type OpKind string

// The operations the group-advantage step may ask for.
const (
	OpAdd    OpKind = "add"    // store Text as a new lesson
	OpModify OpKind = "modify" // replace lesson ID with Text
	OpDelete OpKind = "delete" // remove lesson ID
	OpKeep   OpKind = "keep"   // leave lesson ID as it is
)

// Limits on one advantage reply.
const (
	// MaxLessonRunes caps a lesson's text; longer texts are rejected, not cut.
	MaxLessonRunes = 400
	// MaxOps caps the operations read from one reply; the rest are rejected.
	MaxOps = 8
	// maxReplyBytes caps the reply text that is parsed at all.
	maxReplyBytes = 64 << 10
)

// Op is one operation on the library. ID is a lesson label from the
// advantage prompt ("E1") or a full experience id.
type Op struct {
	Kind OpKind `json:"op"`
	ID   string `json:"id,omitempty"`
	Text string `json:"text,omitempty"`
	// From names, in a merge reply's add, the proposals ("A1", ...) the
	// lesson folds together.
	From []string `json:"from,omitempty"`
}

// Advantage is the model's reply to the group-advantage prompt: the format
// is one JSON object
//
//	{"summaries": ["...", ...], "advantage": "...",
//	 "operations": [{"op": "add", "text": "..."},
//	                {"op": "modify", "id": "E1", "text": "..."},
//	                {"op": "delete", "id": "E2"}, {"op": "keep", "id": "E3"}]}
type Advantage struct {
	Summaries []string `json:"summaries"`
	Advantage string   `json:"advantage"`
	Ops       []Op     `json:"operations"`
	// Rejected says why each malformed operation was dropped.
	Rejected []string `json:"-"`
}

// ErrBadAdvantage reports a reply with no advantage object in it.
var ErrBadAdvantage = errors.New("learn: advantage reply is not the JSON object asked for")

// ParseAdvantage reads the advantage object from a model reply. The object
// may be wrapped in prose or a ```json fence: parsing starts at the first
// '{' that opens a complete object with an "operations" array. Each
// operation is checked on its own: an unknown kind, a missing or extra
// id or text, or a text over MaxLessonRunes drops that operation (listed in
// Rejected), as do operations past MaxOps. Texts are normalised with
// store.NormalizeText. Whether ids exist is for the caller to check.
func ParseAdvantage(reply string) (Advantage, error) {
	return parseOps(reply, MaxOps)
}

// parseOps is ParseAdvantage with its own cap on operations (a merge
// reply may hold one per proposal).
func parseOps(reply string, maxOps int) (Advantage, error) {
	if len(reply) > maxReplyBytes {
		return Advantage{}, fmt.Errorf("%w: reply is %d bytes", ErrBadAdvantage, len(reply))
	}
	b := []byte(reply)
	for off := 0; off < len(b); {
		i := bytes.IndexByte(b[off:], '{')
		if i < 0 {
			break
		}
		off += i
		var raw struct {
			Summaries []string          `json:"summaries"`
			Advantage string            `json:"advantage"`
			Ops       []json.RawMessage `json:"operations"`
		}
		dec := json.NewDecoder(bytes.NewReader(b[off:]))
		if err := dec.Decode(&raw); err != nil || raw.Ops == nil {
			off++
			continue
		}
		a := Advantage{Summaries: raw.Summaries, Advantage: raw.Advantage}
		for n, m := range raw.Ops {
			if len(a.Ops) == maxOps {
				a.Rejected = append(a.Rejected, fmt.Sprintf("operation %d: more than %d operations", n+1, maxOps))
				continue
			}
			op, err := parseOp(m)
			if err != nil {
				a.Rejected = append(a.Rejected, fmt.Sprintf("operation %d: %v", n+1, err))
				continue
			}
			a.Ops = append(a.Ops, op)
		}
		return a, nil
	}
	return Advantage{}, ErrBadAdvantage
}

func parseOp(m json.RawMessage) (Op, error) {
	var op Op
	dec := json.NewDecoder(bytes.NewReader(m))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&op); err != nil {
		return Op{}, errors.New("not an object of op, id and text")
	}
	op.Kind = OpKind(strings.ToLower(strings.TrimSpace(string(op.Kind))))
	op.ID = strings.TrimSpace(op.ID)
	op.Text = store.NormalizeText(op.Text)
	needID := op.Kind != OpAdd
	needText := op.Kind == OpAdd || op.Kind == OpModify
	switch {
	case op.Kind != OpAdd && op.Kind != OpModify && op.Kind != OpDelete && op.Kind != OpKeep:
		return Op{}, fmt.Errorf("unknown op %.20q", op.Kind)
	case needID && op.ID == "":
		return Op{}, fmt.Errorf("%s needs an id", op.Kind)
	case !needID && op.ID != "":
		return Op{}, fmt.Errorf("%s takes no id", op.Kind)
	case needText && op.Text == "":
		return Op{}, fmt.Errorf("%s needs a text", op.Kind)
	case !needText && op.Text != "":
		return Op{}, fmt.Errorf("%s takes no text", op.Kind)
	case op.Kind != OpAdd && len(op.From) > 0:
		return Op{}, fmt.Errorf("%s takes no from", op.Kind)
	case utf8.RuneCountInString(op.Text) > MaxLessonRunes:
		return Op{}, fmt.Errorf("text longer than %d characters", MaxLessonRunes)
	case len(strings.Fields(op.Text)) > MaxLessonWords:
		return Op{}, fmt.Errorf("text longer than %d words", MaxLessonWords)
	case len(op.ID) > 80:
		return Op{}, errors.New("id too long")
	}
	return op, nil
}

// resolve turns an operation of the advantage reply into one to apply:
// its target is a lesson the model was shown, and its text does not leak
// the item's answer. A modify that leaves the text as it is is a keep.
func (r *run) resolve(op Op, it Item, byRef map[string]library.Result) (pendingOp, bool) {
	p := pendingOp{Kind: op.Kind, Text: op.Text, Domain: r.domain(it)}
	if op.Text != "" && !r.o.cfg.AllowLeaks && Leaks(op.Text, it.GroundTruth) {
		return p, false
	}
	if op.Kind == OpAdd {
		p.Key = it.Query
		return p, true
	}
	s, ok := byRef[strings.ToUpper(op.ID)]
	if !ok {
		s, ok = byRef[op.ID]
	}
	if !ok {
		return p, false // not a lesson the model was shown
	}
	p.Target = s.ID
	if op.Kind == OpModify {
		p.Domain = s.Domain
		if store.ExperienceID(s.Domain, op.Text) == s.ID {
			p.Kind, p.Text = OpKeep, ""
		}
	}
	return p, true
}
