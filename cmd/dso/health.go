package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/dso-proxy/dso/config"
)

func init() {
	commands["health"] = command{
		summary: "check a running dso: exit 0 when /healthz (or /readyz) answers 200, else 1",
		args:    "[--addr ADDR] [--ready] [flags]",
		about: `Asks the server at --addr, or at the listen address serve would take from
--config, DSO_CONFIG and DSO_LISTEN (0.0.0.0 and :: are asked on loopback),
for /healthz (the process serves) or, with --ready, /readyz (its backends
answer too). Made for container health checks: the image has no shell or
curl, and the health check runs "dso health" beside the server.`,
		run: healthCmd,
	}
}

// Bounds of dso health: the whole check, and the part of a failing
// answer's body it shows.
const (
	healthTimeout  = 5 * time.Second // /readyz waits up to 3 s per backend
	healthShowBody = 512
)

func healthCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("health")
	addr := fs.String("addr", "", "the server's `ADDR`, host:port or http://host:port (default: serve's listen address)")
	file := fs.String("config", os.Getenv(config.EnvConfig), "YAML config `FILE` whose listen address to ask (default $DSO_CONFIG)")
	ready := fs.Bool("ready", false, "ask /readyz (backends reachable) instead of /healthz")
	timeout := fs.Duration("timeout", healthTimeout, "give up after this long")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	base, err := healthBase(*addr, *file, os.Getenv)
	if err != nil {
		return err
	}
	path := "/healthz"
	if *ready {
		path = "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	status, err := checkHealth(ctx, base+path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", base+path, status)
	return nil
}

// checkHealth GETs u and returns its status line when it is 200; any
// other answer, or none, is an error that says which.
func checkHealth(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	client := &http.Client{
		// No proxy from the environment, no kept connection, no redirect
		// followed: the answer is the server's own.
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return "", fmt.Errorf("%s: nothing is listening there", u)
		case ctx.Err() != nil:
			return "", fmt.Errorf("%s: no answer in time", u)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("%s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.Status, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, healthShowBody))
	if body := printable(string(b)); body != "" {
		return "", fmt.Errorf("%s: %s: %s", u, resp.Status, body)
	}
	return "", fmt.Errorf("%s: %s", u, resp.Status)
}

// printable is s on one line, without control characters.
func printable(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s))
}

// healthBase is the base URL dso health asks: addr when set, else the
// listen address of serve's settings (the config file, then DSO_LISTEN).
// An unspecified host (":8080", 0.0.0.0, ::) is asked on loopback.
func healthBase(addr, file string, getenv func(string) string) (string, error) {
	if addr == "" {
		cfg := config.Default()
		if file != "" {
			var err error
			if cfg, err = config.Load(file); err != nil {
				return "", err
			}
		}
		if v := getenv(config.EnvListen); v != "" {
			cfg.Listen = v
		}
		addr = cfg.Listen
	}
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("%q is not an http:// or https:// URL with a host", addr)
		}
		return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", addr)
	}
	if port == "0" {
		return "", fmt.Errorf("%q has port 0 (a port picked at start): give --addr", addr)
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if err == nil && ip.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}
