package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// CheckFiles reports every file the configuration names that serve could
// not read, each as a Problem naming its field: network.key_file (and
// networks[i].key_file), the FILE of retrieval.embedder wordvec:FILE and
// the files of retrieval.adapters. A relative path is taken from the
// working directory, as serve takes it. Validate looks at values alone;
// this looks at the disk, which `dso config check` does too.
func (c *Config) CheckFiles() error {
	var errs []error
	check := func(path, file, hint string) {
		if msg := unreadable(file); msg != "" {
			errs = append(errs, Problem{Path: path, Msg: fmt.Sprintf("%q %s%s", file, msg, hint)})
		}
	}
	const keyHint = " (make one with dso keygen)"
	if c.Network.Enabled() && c.Network.KeyFile != "" {
		check("network.key_file", c.Network.KeyFile, keyHint)
	}
	for i, n := range c.Networks {
		if n.Enabled() && n.KeyFile != "" {
			check(fmt.Sprintf("networks[%d].key_file", i), n.KeyFile, keyHint)
		}
	}
	if f, ok := strings.CutPrefix(c.Retrieval.Embedder, "wordvec:"); ok && f != "" {
		check("retrieval.embedder", f, "")
	}
	models := make([]string, 0, len(c.Retrieval.Adapters))
	for m := range c.Retrieval.Adapters {
		models = append(models, m)
	}
	sort.Strings(models)
	for _, m := range models {
		check("retrieval.adapters."+m, c.Retrieval.Adapters[m], " (make one with dso align fit)")
	}
	return errors.Join(errs...)
}

// unreadable says why file cannot be read as a regular file, or "" when it
// can. It never opens anything but a regular file, so a FIFO or a device
// named by mistake does not block it.
func unreadable(file string) string {
	st, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "cannot be read (permission denied)"
	case err != nil:
		return "cannot be read"
	case st.IsDir():
		return "is a directory, not a file"
	case !st.Mode().IsRegular():
		return "is not a regular file"
	}
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return "cannot be read (permission denied)"
		}
		return "cannot be read"
	}
	f.Close()
	return ""
}
