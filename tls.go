package logx

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
)

// LoadTLS builds the mutual-TLS configuration a node (Config.TLS) or a
// client (NewClientTLS, QueryStatusTLS) needs from PEM files: caFile holds
// the cluster's CA certificate(s), certFile this party's certificate (with
// any intermediates) and keyFile its private key. Peers must present a
// certificate from one of those CAs; so must this party to them.
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("logx: TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("logx: TLS CA: no PEM certificate in %s", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("logx: TLS certificate: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// raftPeerOK reports whether an accepted connection may speak Raft. With
// mutual TLS, a certificate from the cluster's CA is not enough: Raft
// trusts whoever speaks it as a leader (it can append any entry, install
// any snapshot, and depose the leader with a higher term), so the
// certificate must name the host of a server of this node's latest
// configuration or of Config.Peers, as every member's own certificate does
// (its peers check that name when they dial it). A node whose
// configuration is still empty takes the members a peer listed when it
// did not bootstrap (an emptied Dir, bootstrap.go), and Peers alone while
// it has not decided yet (it asks its peers first); one started with
// Join, before the leader reached it, cannot tell members apart and
// accepts any certificate of the CA. On one host every certificate
// naming that host passes: give programs that are not nodes certificates
// that do not name the nodes' hosts.
func (lx *Stream) raftPeerOK(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return false
	}
	certs := tc.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return false
	}
	addrs := slices.Clone(lx.cfg.Peers)
	if lx.raftPtr.Load() != nil {
		if members, err := lx.serverAddrs(false); err == nil {
			if m := lx.runsWith.Load(); len(members) == 0 && m != nil {
				members = *m // it did not bootstrap: bootstrap.go
			}
			if len(members) == 0 && lx.hooks.defaultServers != nil {
				// A stream of a node not yet added to it: the node's
				// default stream says who the members are.
				members = lx.hooks.defaultServers()
			}
			if len(members) == 0 && lx.cfg.Join {
				return true
			}
			addrs = append(addrs, members...)
		}
	}
	for _, a := range addrs {
		if host, _, err := net.SplitHostPort(a); err == nil && certs[0].VerifyHostname(host) == nil {
			return true
		}
	}
	lx.mux.m.peerNoise.logf(lx.logf, noiseRaft, "logx: refused a Raft connection from %s: its certificate (%q) names no member's host", c.RemoteAddr(), certs[0].Subject.CommonName)
	return false
}
