package logx

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
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
// after its TLS files load again, those whose chain its CA bundle no
// longer verifies (dropStale). Their owners dial again, with a handshake
// that must pass. A node whose clock is far ahead closes connections a
// handshake would refuse too.

// checkPeerCerts closes the connections whose peer's certificate no
// longer holds: expired ones every call (node.tend's round), and, the
// first time after the node's TLS files loaded again, those the CA bundle
// now in use does not verify (with a *tls.Config in Config.TLS, expired
// ones only).
func (n *node) checkPeerCerts() {
	var roots *x509.CertPool
	if tf := n.tlsFiles; tf != nil {
		if g := tf.gen.Load(); n.certsGen.Swap(g) != g {
			roots = tf.current().ClientCAs
		}
	}
	n.mux.dropStale(time.Now(), roots)
}

// noteCerts records the certificate chain the peer of c presented, if c
// is a TLS connection whose handshake is done.
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
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		m.peerCerts[c] = certs
	}
}

// dropStale closes the connections whose peer's certificate no longer
// holds at now: expired, or, with roots, not verified by them. It returns
// how many it closed, and logs them.
func (m *mux) dropStale(now time.Time, roots *x509.CertPool) int {
	type held struct {
		c     net.Conn
		certs []*x509.Certificate
	}
	m.mu.Lock()
	all := make([]held, 0, len(m.peerCerts))
	for c, certs := range m.peerCerts {
		all = append(all, held{c, certs})
	}
	m.mu.Unlock()
	n := 0
	var first error
	for _, h := range all {
		if err := certHolds(h.certs, now, roots); err != nil {
			first = cmp.Or(first, fmt.Errorf("%s: %w", h.c.RemoteAddr(), err))
			h.c.Close() // its owner untracks it
			n++
		}
	}
	if n > 0 {
		m.diag.Printf("logx: closed %d connections whose peer's certificate no longer holds (the first: %v)", n, first)
	}
	return n
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
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("certificate %q: %w", leaf.Subject.CommonName, err)
	}
	return nil
}
