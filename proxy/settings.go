package proxy

import (
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/store"
)

// settings are one request's retrieval settings after config and headers.
type settings struct {
	off           bool
	domain        string
	topK          int
	minConfidence float64
	minScore      *float32 // nil: the calibrated gate
	stricter      *float32 // a client's min score, raising the gate only
	position      string   // config.PositionUser or PositionSystem
	contextTokens int      // the backend's context length; 0: unknown
}

// requestSettings merges backend overrides and request headers; bad header
// values are the client's error. The headers may only narrow what the
// operator configured (a sub-domain, fewer notes, a higher confidence or
// score) unless the request may read the library itself (see mayWiden):
// otherwise a chat client could read, note by note, the library the
// experience API guards. Past the configured bound a value is held at it.
func (s *Server) requestSettings(r *http.Request, b config.Backend, model string) (settings, error) {
	rt := s.opts.Retrieval
	st := settings{off: rt.Library == nil, topK: rt.TopK, minConfidence: rt.MinConfidence, minScore: score32(rt.MinScore), position: rt.Position, contextTokens: b.ContextTokens}
	st.apply(b.Injection)
	for _, m := range rt.Models {
		if ok, _ := path.Match(m.Pattern, model); ok {
			st.apply(m.Injection)
			break
		}
	}
	if st.topK == 0 {
		st.topK = config.DefaultTopK
	}
	widen := s.mayWiden(r)
	if v := r.Header.Get(keyInject); v != "" {
		switch strings.ToLower(v) {
		case "off", "false", "0", "no":
			st.off = true
		case "on", "true", "1", "yes":
		default:
			return st, badRequest("%s must be on or off", HeaderInject)
		}
	}
	if v := r.Header.Get(keyDomain); v != "" {
		if len(v) > 256 {
			return st, badRequest("%s is longer than 256 bytes", HeaderDomain)
		}
		if !widen && !gpuidx.DomainMatch(store.NormalizeDomain(st.domain), store.NormalizeDomain(v)) {
			// Nothing lies both there and where the operator allows.
			st.off = true
		}
		st.domain = v
	}
	if v := r.Header.Get(keyTopK); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return st, badRequest("%s must be an integer from 0 to 100", HeaderTopK)
		}
		if n > 0 && (widen || n < st.topK) {
			st.topK = n
		}
	}
	if v := r.Header.Get(keyMinConfidence); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return st, badRequest("%s must be a number from 0 to 1", HeaderMinConfidence)
		}
		if widen || f > st.minConfidence {
			st.minConfidence = f
		}
	}
	if v := r.Header.Get(keyMinScore); v != "" && !strings.EqualFold(v, "auto") {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < -1 || f > 1 {
			return st, badRequest("%s must be auto or a number from -1 to 1", HeaderMinScore)
		}
		if widen {
			st.minScore = score32(&f)
		} else {
			st.stricter = score32(&f)
		}
	}
	return st, nil
}

// mayWiden reports whether r may widen retrieval past the configuration
// with its headers: whether it would be let into the experience API,
// which shows the library whole. With admin keys, only an admin key
// does; with client keys alone, any client key (the chat route has
// checked it); with no keys, only where the library is open.
func (s *Server) mayWiden(r *http.Request) bool {
	switch {
	case len(s.admin.digests) > 0:
		return s.admin.check(presentedKey(r))
	case len(s.keys.digests) > 0:
		return true
	}
	return !s.closed
}

func score32(f *float64) *float32 {
	if f == nil {
		return nil
	}
	v := float32(*f)
	return &v
}

// apply lays configured overrides over st; zero values inherit.
func (st *settings) apply(in config.Injection) {
	st.off = st.off || in.Off
	if in.Domain != "" {
		st.domain = in.Domain
	}
	if in.TopK > 0 {
		st.topK = in.TopK
	}
	if in.MinConfidence > 0 {
		st.minConfidence = in.MinConfidence
	}
	if in.MinScore != nil {
		st.minScore = score32(in.MinScore)
	}
	if in.Position != "" {
		st.position = in.Position
	}
}
