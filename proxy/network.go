package proxy

import (
	"context"
	"net/http"
)

// NetworkReporter is what the proxy needs of the experience network: a
// JSON-encodable report of what it follows and refuses. It is declared
// here so that the proxy does not depend on how the network syncs.
type NetworkReporter interface {
	Status(ctx context.Context) (any, error)
}

// getNetwork serves GET /v1/network.
func (s *Server) getNetwork(w http.ResponseWriter, r *http.Request) {
	if s.opts.Network == nil {
		writeError(w, surfaceOpenAI, &HTTPError{Status: http.StatusNotFound, Type: "invalid_request_error", Msg: "no network is configured"})
		return
	}
	st, err := s.opts.Network.Status(r.Context())
	if err != nil {
		s.log.WarnContext(r.Context(), "network status", "err", err.Error())
		writeError(w, surfaceOpenAI, &HTTPError{Status: http.StatusInternalServerError, Type: "server_error", Msg: "network status unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}
