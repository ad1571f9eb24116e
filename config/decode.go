package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// decodeProblems restates yaml's type errors in the file's own terms:
// an unknown key is named with the known key nearest to it at that level,
// and a value that does not fit its field is named by the field's path
// with the form it should take. yaml's own messages name Go types
// ("field retreival not found in type config.Config", "cannot unmarshal
// !!str `fast` into time.Duration"); they are kept only where the walk
// over the file finds nothing to say on their line, and for errors of
// another kind (a key given twice).
func decodeProblems(root *yaml.Node, te *yaml.TypeError) problems {
	w := &walker{}
	if root != nil && len(root.Content) > 0 {
		w.walkRoot(root.Content[0])
	}
	explained := map[int]bool{}
	for _, p := range w.ps {
		explained[p.Line] = true
	}
	ps := w.ps
	for _, e := range te.Errors {
		p := Problem{Msg: e}
		if n, _ := fmt.Sscanf(e, "line %d:", &p.Line); n == 1 {
			_, p.Msg, _ = strings.Cut(e, ": ")
		}
		goTerms := strings.Contains(p.Msg, "not found in type") || strings.HasPrefix(p.Msg, "cannot unmarshal")
		if goTerms && explained[p.Line] {
			continue
		}
		ps = append(ps, p)
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}

// maxWalk bounds the nodes decodeProblems visits: aliases can make a
// small file a large tree.
const maxWalk = 1 << 16

// walker follows a YAML tree and the Config type together, noting what
// yaml would refuse.
type walker struct {
	ps     []Problem
	visits int
	seen   map[string]bool // problems already noted (an alias repeats its node)
}

func (w *walker) add(n *yaml.Node, path, format string, args ...any) {
	p := Problem{Path: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)}
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if k := p.Error(); !w.seen[k] {
		w.seen[k] = true
		w.ps = append(w.ps, p)
	}
}

func (w *walker) walkRoot(n *yaml.Node) {
	n = deref(n)
	if n == nil || isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		w.add(n, "", "the file must be a mapping of settings (key: value), not %s", describe(n))
		return
	}
	w.walk(n, reflect.TypeFor[Config](), "")
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[ByteSize]()
)

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if w.visits++; w.visits > maxWalk {
		return
	}
	n = deref(n)
	if n == nil || isNull(n) {
		return // a null leaves the zero value
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode || n.Decode(new(time.Duration)) != nil {
			w.add(n, path, "%s is not a duration (use a form like 250ms, 2s, 1m)", describe(n))
		}
	case t == sizeType:
		if n.Kind != yaml.ScalarNode || n.Decode(new(ByteSize)) != nil {
			w.add(n, path, "%s is %v", describe(n), errSize)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "must be a mapping of settings (key: value), not %s", describe(n))
			return
		}
		fs := yamlFields(t)
		w.eachPair(n, func(k, v *yaml.Node) {
			ft, ok := fs.types[k.Value]
			if !ok {
				w.unknown(k, path, fs.names)
				return
			}
			w.walk(v, ft, joinPath(path, k.Value))
		}, func(merged *yaml.Node) { w.walk(merged, t, path) })
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "must be a mapping (name: value), not %s", describe(n))
			return
		}
		w.eachPair(n, func(k, v *yaml.Node) {
			w.walk(v, t.Elem(), joinPath(path, k.Value))
		}, func(merged *yaml.Node) { w.walk(merged, t, path) })
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "must be a list, not %s", describe(n))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "must be a single value, not %s", describe(n))
			return
		}
		// yaml itself says whether the value fits: the same rules as the
		// whole file's decoding.
		if n.Decode(reflect.New(t).Interface()) != nil {
			w.add(n, path, "%s is not %s", describe(n), kindName(t))
		}
	}
}

// eachPair calls pair for each key and value of mapping n, and merged for
// each mapping a merge key (<<: *anchor) brings in.
func (w *walker) eachPair(n *yaml.Node, pair func(k, v *yaml.Node), merged func(*yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			continue // yaml reports it in its own words
		}
		if k.Tag == "!!merge" {
			if v = deref(v); v != nil && v.Kind == yaml.SequenceNode {
				for _, m := range v.Content {
					merged(m)
				}
			} else {
				merged(v)
			}
			continue
		}
		pair(k, v)
	}
}

// unknown notes a key that is no field at path, with the nearest known
// key when one is near enough to be a typo of it.
func (w *walker) unknown(k *yaml.Node, path string, known []string) {
	if s := nearest(k.Value, known); s != "" {
		w.add(k, path, "unknown field %s; did you mean %s?", k.Value, s)
		return
	}
	w.add(k, path, "unknown field %s", k.Value)
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 8; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's value for a message: a scalar quoted, else its
// kind.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return fmt.Sprintf("%q", v)
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return "this value"
}

// kindName says what a value of t must be, for "X is not ...".
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	}
	return "a valid value"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldSet is the keys a struct takes in YAML, in declaration order, and
// their types.
type fieldSet struct {
	names []string
	types map[string]reflect.Type
}

// yamlFields lists the YAML keys of struct type t as go.yaml.in/yaml
// names them: the tag's name, else the lower-cased field name; inline
// structs lend theirs.
func yamlFields(t reflect.Type) fieldSet {
	fs := fieldSet{types: map[string]reflect.Type{}}
	var collect func(t reflect.Type)
	collect = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("yaml")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
				collect(f.Type)
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if _, dup := fs.types[name]; !dup {
				fs.names = append(fs.names, name)
			}
			fs.types[name] = f.Type
		}
	}
	collect(t)
	return fs
}

// nearest returns the candidate closest to s by edit distance (letters
// swapped count as one edit, and case is ignored), or "" when none is
// within a third of s or so: close enough to be a typo.
func nearest(s string, candidates []string) string {
	best, bestD := "", 1+len(s)/4+1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		if d := editDistance(ls, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of adjacent bytes, each
// one edit.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return max(len(a), len(b))
	}
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
