package learn

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// MergePrompt is the system message of the batch merge request, the step
// of Training-Free GRPO that keeps the library from filling with
// paraphrases. Its reply is parsed by ParseAdvantage.
const MergePrompt = "You maintain a library of short lessons shown to a model before it answers questions. " +
	"A batch of work proposes new lessons (labelled A1, A2, ...); the library already holds lessons near them " +
	"(labelled L1, L2, ...). Merge: lessons that say the same thing become one; a proposal that an existing lesson " +
	"already states is dropped, or folded into it by modifying that lesson; proposals that say something new stay. " +
	"Each lesson is at most 32 words and general: a method or rule, never one question's answer. " +
	"Reply with one JSON object and nothing else: " +
	`{"operations": [{"op": "add", "text": "<lesson>", "from": ["A1", "A3"]}, {"op": "modify", "id": "L1", "text": "<lesson>"}]}` +
	` where "from" lists the proposals an added lesson stands for.`

// mergeNeighbours is how many existing lessons near each proposal the
// merge step sees.
const mergeNeighbours = 3

// maxKeyQuestions caps the questions a merged lesson is keyed by.
const maxKeyQuestions = 4

// resolveConflicts keeps one operation per target lesson: a delete wins
// over every other operation on it, else the first modify wins (later
// ones are rejected) and keeps beside it are dropped.
func resolveConflicts(ops []pendingOp) ([]pendingOp, int) {
	deleted := map[string]bool{}
	for _, op := range ops {
		if op.Kind == OpDelete {
			deleted[op.Target] = true
		}
	}
	modified := map[string]bool{}
	for _, op := range ops {
		if op.Kind == OpModify && !deleted[op.Target] {
			modified[op.Target] = true
		}
	}
	out := ops[:0:0]
	rejected := 0
	done := map[string]bool{}
	for _, op := range ops {
		switch {
		case op.Kind == OpAdd:
		case done[op.Target]:
			if op.Kind == OpModify {
				rejected++
			}
			continue
		case deleted[op.Target] && op.Kind != OpDelete,
			modified[op.Target] && op.Kind == OpKeep:
			continue
		default:
			done[op.Target] = true
		}
		out = append(out, op)
	}
	return out, rejected
}

type mergeResult struct {
	tokens   Tokens
	bad      int
	rejected int
}

// merge asks, per domain, to fold the batch's additions together and into
// the existing lessons near them. Without additions to fold (one, with no
// neighbour) no call is made; a reply that cannot be read leaves the
// additions as they are.
func (r *run) merge(ctx context.Context, epoch, first int, ops []pendingOp) ([]pendingOp, mergeResult, error) {
	var mr mergeResult
	byDomain := map[string][]pendingOp{}
	var domains []string
	rest := ops[:0:0]
	for _, op := range ops {
		if op.Kind != OpAdd {
			rest = append(rest, op)
			continue
		}
		if byDomain[op.Domain] == nil {
			domains = append(domains, op.Domain)
		}
		byDomain[op.Domain] = append(byDomain[op.Domain], op)
	}
	changed := map[string]bool{}
	for _, op := range rest {
		changed[op.Target] = op.Kind != OpKeep
	}
	out := rest
	for _, d := range domains {
		merged, err := r.mergeDomain(ctx, epoch, first, d, byDomain[d], changed, &mr)
		if err != nil {
			return nil, mr, err
		}
		out = append(out, merged...)
	}
	return out, mr, nil
}

func (r *run) mergeDomain(ctx context.Context, epoch, first int, domain string, adds []pendingOp, changed map[string]bool, mr *mergeResult) ([]pendingOp, error) {
	cfg := r.o.cfg
	var near []library.Result
	have := map[string]bool{}
	for _, a := range adds {
		c, err := cfg.Library.Vector(ctx, a.Text)
		if err != nil {
			return nil, fmt.Errorf("embedding a lesson: %w", err)
		}
		found, err := cfg.Library.Search(ctx, library.Query{Vector: c, K: mergeNeighbours, Domain: domain, MinRelevance: &library.NoGate})
		if err != nil && !errors.Is(err, library.ErrEmpty) {
			return nil, err
		}
		for _, f := range found {
			if !have[f.ID] && !changed[f.ID] {
				have[f.ID] = true
				near = append(near, f)
			}
		}
	}
	if len(adds) < 2 && len(near) == 0 {
		return adds, nil
	}
	reply, u, err := cfg.Chat.Chat(ctx, mergeRequest(cfg.Model, adds, near))
	mr.tokens.call(u)
	if err != nil {
		return nil, fmt.Errorf("merging lessons: %w", err)
	}
	adv, err := parseOps(reply, len(adds)+len(near))
	if err != nil {
		mr.bad++
		return adds, nil
	}
	mr.rejected += len(adv.Rejected)
	var out []pendingOp
	modified := map[string]bool{}
	for _, op := range adv.Ops {
		p := pendingOp{Kind: op.Kind, Text: op.Text, Domain: domain}
		switch op.Kind {
		case OpAdd:
			p.Key = mergedKey(adds, op)
		case OpModify:
			i, err := strconv.Atoi(strings.TrimPrefix(strings.ToUpper(op.ID), "L"))
			if err != nil || i < 1 || i > len(near) || !strings.HasPrefix(strings.ToUpper(op.ID), "L") {
				mr.rejected++
				continue
			}
			p.Target = near[i-1].ID
			if modified[p.Target] || store.ExperienceID(domain, op.Text) == p.Target {
				mr.rejected += btoi(modified[p.Target])
				continue // a second change to it, or none
			}
			modified[p.Target] = true
		default:
			continue // a keep changes nothing; a delete is not the merge's to make
		}
		p.ID = opID(epoch, first, pendingOp{Kind: "merge-" + p.Kind, Target: p.Target, Domain: p.Domain, Text: p.Text})
		out = append(out, p)
	}
	return out, nil
}

// mergedKey keys a merged lesson by the questions of the proposals it
// stands for: those it names in From, else the one whose text it kept.
func mergedKey(adds []pendingOp, op Op) string {
	var keys []string
	for i, a := range adds {
		label := "A" + strconv.Itoa(i+1)
		from := slices.ContainsFunc(op.From, func(f string) bool { return strings.EqualFold(strings.TrimSpace(f), label) })
		if (from || len(op.From) == 0 && a.Text == op.Text) && a.Key != "" && !slices.Contains(keys, a.Key) && len(keys) < maxKeyQuestions {
			keys = append(keys, a.Key)
		}
	}
	return strings.Join(keys, "\n")
}

func mergeRequest(model string, adds []pendingOp, near []library.Result) ChatRequest {
	var b strings.Builder
	b.WriteString("Proposed lessons:\n")
	for i, a := range adds {
		fmt.Fprintf(&b, "[A%d] %s\n", i+1, inject.Sanitize(a.Text, MaxLessonRunes))
	}
	b.WriteString("\nExisting lessons:\n")
	if len(near) == 0 {
		b.WriteString("(none)\n")
	}
	for i, n := range near {
		fmt.Fprintf(&b, "[L%d] %s\n", i+1, inject.Sanitize(n.Text, MaxLessonRunes))
	}
	zero := 0.0
	return ChatRequest{Model: model, Temperature: &zero, Messages: []Message{
		{Role: "system", Content: MergePrompt},
		{Role: "user", Content: b.String()},
	}}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
