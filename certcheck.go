package logx

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// Certificates are checked again on open connections. A handshake checks
// the peer's certificate (its CA, its dates) only when a connection is
// made, and a node's connections live long: Raft pools its connections
// until one fails, and clock reports keep a forwarding connection busy. So
// a certificate that expired, or whose CA was taken out of the bundle
// (the last step of moving to a new CA, often to cut off a leaked key),
// would have kept its connections for good. Every round the node closes
// the connections whose peer's certificate has expired by its clock, and
// those whose chain the CA bundle in use does not verify, each checked
// once per load of the TLS files (dropStale). Their owners dial again,
// with a handshake that must pass. A node whose clock is far ahead closes
// connections a handshake would refuse too. Only connections whose
// handshake verified a chain have it checked again (a Config.TLS whose own
// verification takes what the standard one refuses keeps its choice); the
// leaf's expiry is checked on all. An accepted Raft connection also has
// the membership check that let it in made again (keepVetting).

// peerCert is what the peer of a TLS connection presented: its chain,
// whether the handshake verified it (a Config.TLS of one's own may take
// what the standard check refuses: then only the leaf's expiry is checked
// again), and the load of the TLS files it was last verified against
// (tlsFiles.gen; 0: the handshake's only).
type peerCert struct {
	certs    []*x509.Certificate
	verified bool
	checked  atomic.Uint64
	// raftOK, for an accepted connection handed to Raft, is the check
	// that let it in (Stream.raftPeerOK), made again every round: Raft
	// keeps such a connection for good, and the members change. A
	// certificate that names no member's host any more (one removed, or
	// any of the CA's while a node started with Join knew no member)
	// lost its Raft connections only when they broke.
	raftOK func(net.Conn) bool
}

// checkPeerCerts closes the connections whose peer's certificate no
// longer holds (node.tend calls it every round, ReloadTLS after a load).
// With a *tls.Config in Config.TLS, only expiry is checked.
func (n *node) checkPeerCerts() {
	var roots *x509.CertPool
	var gen uint64
	if tf := n.tlsFiles; tf != nil {
		gen = tf.gen.Load() // first: the roots are at least this load's
		roots = tf.current().ClientCAs
	}
	n.mux.dropStale(time.Now(), roots, gen)
}

// noteCerts records the certificate chain the peer of c presented, if c
// is a TLS connection whose handshake verified one.
func (m *mux) noteCerts(c net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.noteCertsLocked(c)
}

func (m *mux) noteCertsLocked(c net.Conn) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	if _, tracked := m.conns[c]; !tracked {
		return // closed meanwhile
	}
	if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
		m.peerCerts[c] = &peerCert{certs: st.PeerCertificates, verified: len(st.VerifiedChains) > 0}
	}
}

// keepVetting has c, an accepted connection that ok let speak Raft,
// checked with ok again every round (dropStale).
func (m *mux) keepVetting(c net.Conn, ok func(net.Conn) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.peerCerts[c]; p != nil {
		p.raftOK = ok
	}
}

// dropStale closes the connections whose peer's certificate no longer
// holds at now: expired, or, with roots, not verified by them (those not
// verified since load gen), or, on a Raft connection accepted, naming no
// member's host now (keepVetting). Their sockets close at once; the TLS
// closes run on goroutines of their own (a TLS close writes to its peer,
// which may not read), and the connections leave peerCerts at once. It returns how many it closes, and logs them.
func (m *mux) dropStale(now time.Time, roots *x509.CertPool, gen uint64) int {
	type held struct {
		c      net.Conn
		p      *peerCert
		raftOK func(net.Conn) bool
	}
	m.mu.Lock()
	all := make([]held, 0, len(m.peerCerts))
	for c, p := range m.peerCerts {
		all = append(all, held{c, p, p.raftOK})
	}
	m.mu.Unlock()
	var stale []net.Conn
	var first error
	for _, h := range all {
		chain := roots != nil && h.p.verified && h.p.checked.Load() != gen
		err := certHolds(h.p.certs, now, nil)
		if err == nil && chain {
			err = certHolds(h.p.certs, now, roots)
		}
		if err == nil && h.raftOK != nil && !h.raftOK(h.c) {
			err = fmt.Errorf("certificate %q names no member's host now, and speaks Raft", h.p.certs[0].Subject.CommonName)
		}
		if err != nil {
			stale = append(stale, h.c)
			first = cmp.Or(first, fmt.Errorf("%s: %w", h.c.RemoteAddr(), err))
			continue
		}
		if chain {
			h.p.checked.Store(gen)
		}
	}
	if len(stale) == 0 {
		return 0
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return 0 // closing: every connection is cut
	}
	for _, c := range stale {
		if tc, ok := c.(*tls.Conn); ok {
			// The socket at once: a frame the peer sends from now on is
			// not read (the TLS close below, on a goroutine, took a
			// moment, and a client whose certificate had expired got
			// one more entry written in it).
			_ = tc.NetConn().Close()
		}
		delete(m.peerCerts, c)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			c.Close() // its owner untracks it
		}()
	}
	m.mu.Unlock()
	m.diag.Printf("logx: closing %d connections whose peer's certificate no longer holds (the first: %v)", len(stale), first)
	return len(stale)
}

// certHolds checks a peer's chain (its leaf first) at now: the leaf not
// expired, and, with roots, a chain from the leaf to one of them.
func certHolds(certs []*x509.Certificate, now time.Time, roots *x509.CertPool) error {
	leaf := certs[0]
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("certificate %q expired at %v", leaf.Subject.CommonName, leaf.NotAfter.UTC())
	}
	if roots == nil {
		return nil
	}
	if err := verifyChain(certs, now, roots); err != nil {
		return fmt.Errorf("certificate %q: %w", leaf.Subject.CommonName, err)
	}
	return nil
}

// verifyChain checks that certs (the leaf first, then any intermediates)
// chain to one of roots at now, for any use: the check of a peer's chain
// (certHolds) and of a node's own (ownCertTrusted).
func verifyChain(certs []*x509.Certificate, now time.Time, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}
