package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Environment variables read by ApplyEnv.
const (
	EnvConfig      = "DSO_CONFIG"       // path of the YAML file
	EnvListen      = "DSO_LISTEN"       // Config.Listen
	EnvBackends    = "DSO_BACKENDS"     // comma-separated TYPE:URL, replaces Config.Backends
	EnvData        = "DSO_DATA"         // Config.Data
	EnvRedis       = "DSO_REDIS"        // Config.Redis
	EnvAPIKeys     = "DSO_API_KEYS"     // comma-separated client keys, replaces Config.APIKeys
	EnvAdminKeys   = "DSO_ADMIN_KEYS"   // comma-separated admin keys, replaces Config.AdminKeys
	EnvEmbedder    = "DSO_EMBEDDER"     // Config.Retrieval.Embedder
	EnvOpenLibrary = "DSO_OPEN_LIBRARY" // Config.OpenLibrary: 1/true or 0/false
	EnvMemoryLimit = "DSO_MEMORY_LIMIT" // Config.MemoryLimit: a size (4GiB) or off
	// EnvAllowedHosts is Config.AllowedHosts, comma-separated: the names
	// a deployment is reached by belong with its environment.
	EnvAllowedHosts = "DSO_ALLOWED_HOSTS"
	// EnvTrustedProxies is Config.TrustedProxies, comma-separated.
	EnvTrustedProxies = "DSO_TRUSTED_PROXIES"
	// EnvTrustVoterHeader is Config.TrustVoterHeader: 1/true or 0/false.
	// A gateway that sets X-DSO-Voter is deployed beside dso, so whether
	// to trust it belongs with the deployment's environment.
	EnvTrustVoterHeader = "DSO_TRUST_VOTER_HEADER"
)

// ApplyEnv overrides c with the DSO_* environment variables that are set.
// getenv is os.Getenv outside tests.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	if v := getenv(EnvListen); v != "" {
		c.Listen = v
	}
	if v := getenv(EnvData); v != "" {
		c.Data = v
	}
	if v := getenv(EnvRedis); v != "" {
		c.Redis = Secret(v)
	}
	if v := getenv(EnvBackends); v != "" {
		bs, err := ParseBackendSpecs(strings.Split(v, ","))
		if err != nil {
			return fmt.Errorf("%s: %w", EnvBackends, err)
		}
		c.SetBackends(bs)
	}
	if v := getenv(EnvAPIKeys); v != "" {
		c.APIKeys = splitSecrets(v)
	}
	if v := getenv(EnvAdminKeys); v != "" {
		c.AdminKeys = splitSecrets(v)
	}
	if v := getenv(EnvAllowedHosts); v != "" {
		c.AllowedHosts = splitList(v)
	}
	if v := getenv(EnvTrustedProxies); v != "" {
		c.TrustedProxies = splitList(v)
	}
	if v := getenv(EnvEmbedder); v != "" {
		c.Retrieval.Embedder = v
	}
	if v := getenv(EnvMemoryLimit); v != "" {
		n, err := ParseByteSize(v)
		if err != nil {
			return fmt.Errorf("%s: %w", EnvMemoryLimit, err)
		}
		c.MemoryLimit = n
	}
	for _, b := range []struct {
		name string
		to   *bool
	}{{EnvOpenLibrary, &c.OpenLibrary}, {EnvTrustVoterHeader, &c.TrustVoterHeader}} {
		if v := getenv(b.name); v != "" {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%s: %q is not 1, true, 0 or false", b.name, v)
			}
			*b.to = on
		}
	}
	return nil
}

// splitList is a comma-separated list without its empty items.
func splitList(v string) []string {
	var out []string
	for _, x := range strings.Split(v, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func splitSecrets(v string) []Secret {
	var out []Secret
	for _, k := range splitList(v) {
		out = append(out, Secret(k))
	}
	return out
}

// ParseBackendSpecs parses several TYPE:URL specs, skipping empty ones.
func ParseBackendSpecs(specs []string) ([]Backend, error) {
	var bs []Backend
	for _, s := range specs {
		if strings.TrimSpace(s) == "" {
			continue
		}
		b, err := ParseBackendSpec(s)
		if err != nil {
			return nil, err
		}
		bs = append(bs, b)
	}
	return bs, nil
}

// SetBackends replaces the backends, naming and defaulting the new ones.
func (c *Config) SetBackends(bs []Backend) {
	c.Backends = bs
	c.fill()
}
