package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Reading a config file: Load for serve, Check and CheckAll for
// dso config check, with problems placed on the file's lines.

// Load reads a YAML config file, fills defaults and resolves API keys named
// by api_key_env. It does not validate: call Validate, or use Check for
// problems with line numbers.
func Load(file string) (Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, _, err := parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", file, err)
	}
	return c, nil
}

// parse decodes data strictly (unknown fields are errors) and returns the
// config and its YAML tree, for line numbers. Values that do not fit their
// fields, and unknown fields, are returned as problems (see
// decodeProblems), with the rest decoded; a syntax error as yaml's error.
func parse(data []byte) (Config, *yaml.Node, error) {
	var c Config
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return c, nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			err = decodeProblems(&root, te)
		}
		return c, &root, err
	}
	for i := range c.Backends {
		if env := c.Backends[i].APIKeyEnv; env != "" {
			if v := os.Getenv(env); v != "" {
				c.Backends[i].APIKey = Secret(v)
			}
		}
	}
	c.fill()
	return c, &root, nil
}

// Check validates a config file and returns every problem, each with the
// line it is on where the file has it. It looks at the file alone; CheckAll
// also looks for the files it names.
func Check(data []byte) []Problem { return check(data, false) }

// CheckAll is Check and Config.CheckFiles: every problem serve would meet
// with this file, from the working directory. `dso config check` runs it.
func CheckAll(data []byte) []Problem { return check(data, true) }

func check(data []byte, files bool) []Problem {
	c, root, err := parse(data)
	var ps []Problem
	if err != nil {
		var dps problems
		if !errors.As(err, &dps) {
			p := Problem{Msg: err.Error()}
			// Syntax errors read "yaml: line N: ...".
			if n, _ := fmt.Sscanf(err.Error(), "yaml: line %d:", &p.Line); n == 1 {
				_, p.Msg, _ = strings.Cut(strings.TrimPrefix(err.Error(), "yaml: "), ": ")
			}
			return []Problem{p}
		}
		// Type errors leave the rest decoded: report them and go on.
		ps = append(ps, dps...)
		c.fill()
	}
	errs := unjoin(c.Validate())
	if files {
		errs = append(errs, unjoin(c.CheckFiles())...)
	}
	for _, e := range errs {
		var p Problem
		if errors.As(e, &p) {
			p.Line = lineOf(root, p.Path)
			ps = append(ps, p)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	return ps
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// lineOf finds the line of a field path such as backends[1].url in the YAML
// tree, falling back to the nearest enclosing node that exists.
func lineOf(root *yaml.Node, fieldPath string) int {
	if root == nil || len(root.Content) == 0 {
		return 0
	}
	n := root.Content[0]
	line := n.Line
	parts := strings.Split(fieldPath, ".")
	for i, part := range parts {
		key, idx := part, -1
		if k, rest, ok := strings.Cut(part, "["); ok {
			key = k
			fmt.Sscanf(rest, "%d]", &idx)
		}
		next := mappingValue(n, key)
		if next == nil && i < len(parts)-1 {
			// A map key may hold dots (retrieval.adapters.nomic-embed-text:v1.5).
			if v := mappingValue(n, strings.Join(parts[i:], ".")); v != nil {
				return v.Line
			}
		}
		if next == nil {
			return line
		}
		n, line = next, next.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n, line = n.Content[idx], n.Content[idx].Line
		}
	}
	return line
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
