package logx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Certificates rotate without a restart. A node whose Config names TLS
// files (TLSCAFile, TLSCertFile, TLSKeyFile) loads them again when they
// change: the node's goroutine looks at their sizes and times every round
// (balanceEvery ElectionTimeouts), and Logx.ReloadTLS does at once (logx
// node calls it on SIGHUP). A reload that fails (a half-written file, a
// key that does not match) keeps the material in use and is tried again
// at the next look. Each handshake takes the material loaded last: a new
// CA bundle is trusted, and a new certificate presented, from the next
// connection on; connections already open whose peer's certificate the
// new bundle does not verify are closed (certcheck.go). A Config.TLS given as a
// *tls.Config is the caller's to rotate (GetCertificate,
// GetConfigForClient, GetClientCertificate).
//
// A new certificate is a new identity for the node's batches (dedup.go),
// and a producer id belongs to the first identity that used it, so each
// stream's producer takes a new producer id for its next batch, and sends
// its batches over a connection made with the material it took
// (TestTLSRotation).

// tlsFiles is a node's TLS material loaded from files.
type tlsFiles struct {
	ca, cert, key string

	mu    sync.Mutex // serializes reloads
	stamp string     // the files' sizes and times when last loaded
	cur   atomic.Pointer[tls.Config]
	gen   atomic.Uint64 // bumped by every reload that changed the material
}

func loadTLSFiles(ca, cert, key string) (*tlsFiles, error) {
	t := &tlsFiles{ca: ca, cert: cert, key: key}
	if _, err := t.reload(true); err != nil {
		return nil, err
	}
	return t, nil
}

// current is the material loaded last.
func (t *tlsFiles) current() *tls.Config { return t.cur.Load() }

// filesStamp describes the three files' sizes and modification times.
func (t *tlsFiles) filesStamp() (string, error) {
	s := ""
	for _, p := range []string{t.ca, t.cert, t.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d.%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// reload loads the files again if they changed since the last load (or
// always, with force) and reports whether the material changed.
func (t *tlsFiles) reload(force bool) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	stamp, err := t.filesStamp()
	if err != nil {
		return false, fmt.Errorf("logx: TLS files: %w", err)
	}
	if !force && stamp == t.stamp {
		return false, nil
	}
	cfg, err := LoadTLS(t.ca, t.cert, t.key)
	if err != nil {
		return false, err
	}
	if err := ownCertTrusted(cfg); err != nil {
		return false, fmt.Errorf("logx: TLS files: the certificate in %s is not from a CA in %s, so this node's peers, holding certificates from the same CAs as it, would be refused: %w", t.cert, t.ca, err)
	}
	t.stamp = stamp
	t.cur.Store(cfg) // before gen: see tlsNow
	t.gen.Add(1)
	return true, nil
}

// ownCertTrusted checks that cfg's CAs verify its own certificate (a
// node's CA file serves for both its peers' certificates and its
// clients'): a CA file replaced by another CA's (logx certs run again into
// the same directory made a new CA, before it reused the old one) would
// refuse every peer, and a reload of it took the node out of its cluster.
// Time is left to the handshakes: a chain refused only for a date (a
// certificate expired, or not valid yet) passes here.
func ownCertTrusted(cfg *tls.Config) error {
	var certs []*x509.Certificate
	for _, der := range cfg.Certificates[0].Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		certs = append(certs, c)
	}
	err := verifyChain(certs, time.Now(), cfg.RootCAs)
	var dated x509.CertificateInvalidError
	if errors.As(err, &dated) && dated.Reason == x509.Expired {
		return nil
	}
	return err
}

// serverConfig is the listener's configuration: every handshake takes the
// material loaded last.
func (t *tlsFiles) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return t.current(), nil },
	}
}

// ReloadTLS loads the node's TLS files (Config.TLSCAFile, TLSCertFile,
// TLSKeyFile) again, now, if they changed; new connections use them. It
// returns an error, and keeps the material in use, if they do not load.
// Without TLS files it does nothing.
func (lx *Logx) ReloadTLS() error {
	if lx.node.tlsFiles == nil {
		return nil
	}
	changed, err := lx.node.tlsFiles.reload(false)
	if changed {
		lx.logf("logx: TLS files loaded again (ReloadTLS)")
		lx.node.checkPeerCerts()
	}
	return err
}

// tlsConfig is the node's TLS configuration for new connections (nil
// without TLS).
func (n *node) tlsConfig() *tls.Config {
	cfg, _ := n.tlsNow()
	return cfg
}

// tlsNow is the node's TLS configuration and its generation (0 when it
// cannot change), for a stream's producer. The generation is read first:
// a reload in between gives a newer configuration with an older
// generation, which the next look replaces, never the other way round.
func (n *node) tlsNow() (*tls.Config, uint64) {
	if n.tlsFiles == nil {
		return n.cfg.TLS, 0
	}
	gen := n.tlsFiles.gen.Load()
	return n.tlsFiles.current(), gen
}

// useCurrentTLS takes the node's current certificate as this stream's
// identity if it changed since the last batch, under a new producer id
// (the leader refuses a producer id under another certificate). Called by
// the producer goroutine before it encodes a batch.
func (lx *Stream) useCurrentTLS() {
	if lx.hooks.tls == nil {
		return
	}
	cfg, gen := lx.hooks.tls()
	if gen == lx.tlsGen {
		return
	}
	identity, subject, err := tlsIdentities(cfg)
	if err != nil {
		lx.logf("logx: the reloaded TLS certificate: %v; batches keep the previous identity", err)
		lx.tlsGen = gen
		return
	}
	lx.ids.Store(&tlsIDs{batches: identity, clocks: subject})
	lx.tlsGen = gen
	lx.producer, lx.pseq = newProducerID(), 0
	// The new id's batches go over a connection made with the same
	// certificate, whatever reloads come before the producer sees them.
	lx.fwd.reset()
	lx.fwd.tls = cfg
}

// tlsIDs are a stream's certificate identities (nil without TLS): batches
// for the batches it commits as leader (dedup.go), clocks for its clock
// reports (clock.go). Replaced whole by useCurrentTLS, read by any
// goroutine.
type tlsIDs struct{ batches, clocks []byte }

// ReloadingTLS is LoadTLS whose material follows the files: at a
// handshake, at most once a second, it loads them again if they changed
// (a reload that fails keeps the material in use). For a program that
// dials the nodes (NewClientTLS, NewStreamClient, QueryStatusTLS) and must
// keep working while certificates rotate; a node does the same with its
// own Config's TLS files. The peer's certificate is verified, against the
// CA loaded last, by VerifyConnection.
func ReloadingTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	t, err := loadTLSFiles(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	var last atomic.Int64
	fresh := func() *tls.Config {
		// On the monotonic clock: with the wall clock's, a clock stepped
		// back by hours stopped the reloads for as long.
		if _, ok := onceEvery(&last, time.Second); ok {
			_, _ = t.reload(false)
		}
		return t.current()
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return fresh(), nil },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &fresh().Certificates[0], nil
		},
		// The roots change with the files, so the standard check, which
		// takes RootCAs as they were, is replaced by VerifyConnection's.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("logx: the peer sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: fresh().RootCAs, Intermediates: x509.NewCertPool(), DNSName: cs.ServerName}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
	}, nil
}
