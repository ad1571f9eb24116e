package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// Opening what serve retrieves from: the store, the library in its
// embedding space, and the embedders that space names.

// followInterval is how often serve reads the store's change log: other
// processes' writes are searched here within about a second, for one
// indexed read a second when nothing changed.
const followInterval = time.Second

// openRetrieval opens the store under cfg.Data, rebuilds the index, opens
// the library in its embedding space and follows the store's changes. The
// returned func stops following and closes them.
func openRetrieval(ctx context.Context, cfg config.Config, router *providers.Router, log *slog.Logger) (proxy.Retrieval, func(), error) {
	return openRetrievalWith(ctx, cfg, router, log, func() (gpuidx.Index, error) {
		return gpuidx.Open(cfg.Retrieval.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, log)
	})
}

// openRetrievalWith is openRetrieval with the index newIndex opens (dso
// bench index configures its own); it closes that index with the rest.
func openRetrievalWith(ctx context.Context, cfg config.Config, router *providers.Router, log *slog.Logger, newIndex func() (gpuidx.Index, error)) (proxy.Retrieval, func(), error) {
	rc := cfg.Retrieval
	if rc.Disabled {
		log.Info("retrieval disabled by config")
		return proxy.Retrieval{}, func() {}, nil
	}
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return proxy.Retrieval{}, nil, err
	}
	closeStore := func() {
		if err := st.Close(); err != nil {
			log.Warn("closing the store", "err", err.Error())
		}
	}
	idx, err := newIndex()
	if err != nil {
		closeStore()
		return proxy.Retrieval{}, nil, fmt.Errorf("--index %s: %w", rc.Index, err)
	}
	// The limit follows the index as the library fills it, so that the
	// load's garbage is collected within the headroom, then the library's
	// indexes (a move to a new space builds a second one).
	limit := startMemoryLimit(cfg, idx.Bytes, log)
	lib, err := openLibrary(ctx, st, cfg, rc.CacheSize, idx, router, withLogger(log), withSnapshot(cfg))
	if err != nil {
		limit.close()
		idx.Close()
		closeStore()
		return proxy.Retrieval{}, nil, err
	}
	limit.use(lib.IndexBytes)
	// What the load read (every stored experience, decoded) is garbage
	// now: give it back at once rather than as the scavenger gets to it.
	debug.FreeOSMemory()
	// dso import, dso learn and other serves write the same file, or other
	// replicas the same Redis: follow the change log so that what they
	// write is searched here too.
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		lib.Follow(followCtx, followInterval)
	}()
	closeAll := func() {
		stopFollowing()
		<-followed // before the index and store it uses close
		lib.Close()
		idx.Close()
		closeStore()
		limit.close()
	}
	log.Info("experience library open", "experiences", lib.Len(), "store", storeKind(cfg), "space", lib.Space().Name,
		"moving_to", lib.Moving(), "to_reembed", lib.Stale())
	warnSpaceUse(cfg, lib.Space(), log)
	return proxy.Retrieval{
		Library: lib, Budget: rc.Budget, TopK: rc.TopK, MinConfidence: rc.MinConfidence, MinScore: rc.MinScore, InjectWhole: rc.InjectWhole,
		MaxTokens: rc.MaxTokens, NodeID: cfg.NodeID, Models: rc.Models, Position: rc.InjectPosition,
	}, closeAll, nil
}

// warnSpaceUse says, once at start, where the one library space differs
// from what the configuration might suggest: backends whose own embedding
// model is not the library's (their questions are embedded in the
// library's space all the same).
func warnSpaceUse(cfg config.Config, sp library.Space, log *slog.Logger) {
	for _, b := range cfg.Backends {
		if b.EmbeddingModel != "" && "model:"+b.EmbeddingModel != sp.Name {
			log.Warn("backend embedding_model is not the library's embedding space; questions to it are embedded in the library's space",
				"backend", b.Name, "embedding_model", b.EmbeddingModel, "space", sp.Name)
		}
	}
}

// servedStore is a store serve can run on: what the library, the learner
// and the proxy need of it, and Close.
type servedStore interface {
	library.Store
	learn.Store
	proxy.Store
	Close() error
}

// openStore opens the shared Redis store when cfg names one, else the
// SQLite file under cfg.Data, creating it where there is none.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (servedStore, error) {
	return openStoreIn(ctx, cfg, log, store.Options{})
}

// openExistingStore is openStore for the commands that only read the
// store (export): it creates nothing, and a data directory that holds no
// store is the error "no dso data at DIR".
func openExistingStore(ctx context.Context, cfg config.Config, log *slog.Logger) (servedStore, error) {
	st, err := openStoreIn(ctx, cfg, log, store.Options{MustExist: true})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no dso data at %s (no %s there; check --data, %s or data: in the config)", cfg.Data, store.FileName, config.EnvData)
	}
	return st, err
}

// openStoreIn opens the configured store; opts says how a SQLite store is
// opened, less the limits, which come from cfg.
func openStoreIn(ctx context.Context, cfg config.Config, log *slog.Logger, opts store.Options) (servedStore, error) {
	rc := cfg.Retrieval
	if cfg.Redis != "" {
		st, err := store.OpenRedis(ctx, string(cfg.Redis), store.RedisOptions{
			MaxTraces: rc.MaxTraces, TraceMaxAge: rc.TraceMaxAge, Logger: log,
		})
		if err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		return st, nil
	}
	opts.MaxTraces, opts.TraceMaxAge = rc.MaxTraces, rc.TraceMaxAge
	st, err := store.OpenDir(ctx, cfg.Data, opts)
	if err != nil {
		return nil, err
	}
	return st, nil
}

func storeKind(cfg config.Config) string {
	if cfg.Redis != "" {
		return "redis"
	}
	return "sqlite:" + cfg.Data
}

type libraryOption func(*library.Config)

// offline opens the library for a command that writes and exits.
func offline(c *library.Config) { c.Offline = true }

func withLogger(log *slog.Logger) libraryOption {
	return func(c *library.Config) { c.Logger = log }
}

// withSnapshot keeps serve's index in a snapshot beside the SQLite file,
// so that a restart reads it and the changes since rather than every
// experience. Replicas over Redis keep none and read the store at start:
// a replica's disk is often not its own to keep (a container's), and the
// Redis store cannot vouch for a snapshot (see library.ChangeFinder).
func withSnapshot(cfg config.Config) libraryOption {
	return func(c *library.Config) {
		if cfg.Redis == "" {
			c.Snapshot = filepath.Join(cfg.Data, library.SnapshotFile)
		}
	}
}

// openLibrary builds the library over st in the configured embedding
// space, with the configured seed, so that serve, import, learn and eval
// map vectors the same way. router serves model: spaces; nil builds one
// from cfg.
func openLibrary(ctx context.Context, st library.Store, cfg config.Config, cacheSize int, idx gpuidx.Index, router *providers.Router, opts ...libraryOption) (*library.Library, error) {
	rc := cfg.Retrieval
	if router == nil {
		var err error
		if router, err = providers.NewRouter(cfg.Backends, nil); err != nil {
			return nil, err
		}
	}
	sp, err := librarySpace(rc, router)
	if err != nil {
		return nil, err
	}
	lc := library.Config{Store: st, Space: sp, Index: idx, Seed: rc.Seed, CacheSize: cacheSize,
		Previous: func(name string) (library.Space, bool) { return previousSpace(name, router) },
		NewIndex: func() (gpuidx.Index, error) {
			return gpuidx.Open(rc.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, slog.New(slog.DiscardHandler))
		},
	}
	if file, ok := rc.Adapters[sp.Model]; ok && sp.Model != "" {
		if lc.Adapter, err = align.LoadAdapter(file); err != nil {
			return nil, fmt.Errorf("retrieval.adapters[%s]: %w", sp.Model, err)
		}
	}
	for _, o := range opts {
		o(&lc)
	}
	return library.New(ctx, lc)
}

// librarySpace resolves retrieval.embedder to the library's space; router
// serves model: spaces.
func librarySpace(rc config.Retrieval, router *providers.Router) (library.Space, error) {
	spec := rc.LibraryEmbedder()
	if model, ok := strings.CutPrefix(spec, "model:"); ok {
		sp, err := routedSpace(router, spec, model)
		if err != nil {
			return library.Space{}, fmt.Errorf("retrieval.embedder %s: %w", spec, err)
		}
		return sp, nil
	}
	emb, name, err := localEmbedder(spec)
	if err != nil {
		return library.Space{}, err
	}
	return library.Space{Name: name, Embedder: emb, Model: name}, nil
}

// previousSpace rebuilds the embedder of an earlier library space, when
// this configuration can still embed there: the built-in hash spaces, and
// backend models the router still serves (spaces named by a bare model
// name come from before spaces were named).
func previousSpace(name string, router *providers.Router) (library.Space, bool) {
	if strings.HasPrefix(name, "hash") {
		emb, n, err := localEmbedder(name)
		if err != nil || n != name {
			return library.Space{}, false
		}
		return library.Space{Name: name, Embedder: emb, Model: name}, true
	}
	if strings.HasPrefix(name, "wordvec:") {
		return library.Space{}, false // the file is not known
	}
	sp, err := routedSpace(router, name, strings.TrimPrefix(name, "model:"))
	return sp, err == nil
}

// routedSpace is the space name of embedding model, embedded by the
// backend router sends it to; an error when no backend serves it.
func routedSpace(router *providers.Router, name, model string) (library.Space, error) {
	if _, err := router.Route(model); err != nil {
		return library.Space{}, err
	}
	return library.Space{Name: name, Embedder: routedEmbedder{router}, Model: model}, nil
}

// routedEmbedder embeds with the backend the router sends a model to,
// then its fallbacks.
type routedEmbedder struct{ r *providers.Router }

func (e routedEmbedder) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	chain, err := e.r.Route(model)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, b := range chain {
		vs, err := b.Embed(ctx, model, texts)
		if err == nil {
			return vs, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// localEmbedder returns a local embedder for "hash[:DIM]" or
// "wordvec:FILE" and the name of its space.
func localEmbedder(spec string) (library.Embedder, string, error) {
	if f, ok := strings.CutPrefix(spec, "wordvec:"); ok {
		spec = "vectors:" + f
	}
	e, err := openEmbedder(spec)
	if err != nil {
		return nil, "", fmt.Errorf("retrieval.embedder: %w", err)
	}
	name := spec
	if f, ok := strings.CutPrefix(spec, "vectors:"); ok {
		name = "wordvec:" + filepath.Base(f)
	} else if spec == "hash" {
		name = "hash:" + config.DefaultHashDim
	}
	return library.EmbedFunc(e.Embed), name, nil
}
