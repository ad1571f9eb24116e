package learn

import (
	"reflect"
	"testing"
)

// Conflicting operations on one lesson resolve to one: a delete wins over
// a modify and a keep, the first modify wins over later ones (rejected),
// and additions pass through for the merge step.
func TestResolveConflicts(t *testing.T) {
	ops := []pendingOp{
		{ID: "1", Kind: OpModify, Target: "a", Text: "better a"},
		{ID: "2", Kind: OpKeep, Target: "a"},
		{ID: "3", Kind: OpDelete, Target: "a"},
		{ID: "4", Kind: OpDelete, Target: "a"},
		{ID: "5", Kind: OpModify, Target: "b", Text: "better b"},
		{ID: "6", Kind: OpModify, Target: "b", Text: "other b"},
		{ID: "7", Kind: OpKeep, Target: "b"},
		{ID: "8", Kind: OpAdd, Text: "new"},
		{ID: "9", Kind: OpKeep, Target: "c"},
	}
	got, rejected := resolveConflicts(ops)
	want := []pendingOp{ops[2], ops[4], ops[7], ops[8]}
	if !reflect.DeepEqual(got, want) || rejected != 1 {
		t.Errorf("resolved to %+v, %d rejected; want %+v, 1 rejected", got, rejected, want)
	}
}
