package proxy

import (
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/dso-proxy/dso/config"
)

// settings are one request's retrieval settings after config and headers.
type settings struct {
	off           bool
	domain        string
	topK          int
	minConfidence float64
	minScore      *float32 // nil: the calibrated gate
	position      string   // config.PositionUser or PositionSystem
	contextTokens int      // the backend's context length; 0: unknown
}

// requestSettings merges backend overrides and request headers; bad header
// values are the client's error.
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
		st.domain = v
	}
	if v := r.Header.Get(keyTopK); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return st, badRequest("%s must be an integer from 0 to 100", HeaderTopK)
		}
		st.topK = n
	}
	if v := r.Header.Get(keyMinConfidence); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return st, badRequest("%s must be a number from 0 to 1", HeaderMinConfidence)
		}
		st.minConfidence = f
	}
	if v := r.Header.Get(keyMinScore); v != "" && !strings.EqualFold(v, "auto") {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < -1 || f > 1 {
			return st, badRequest("%s must be auto or a number from -1 to 1", HeaderMinScore)
		}
		st.minScore = score32(&f)
	}
	if st.topK == 0 {
		st.topK = config.DefaultTopK
	}
	return st, nil
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
