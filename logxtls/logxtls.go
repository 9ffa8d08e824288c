// Package logxtls makes a certificate authority and certificates for trying
// logx's mutual TLS (logx.Config.TLS, logx.LoadTLS) on a test cluster,
// with the standard library alone. Keep real clusters' keys in a real CA.
//
//	ca, _ := logxtls.NewCA("test cluster CA", 24*time.Hour)
//	cfg, _ := ca.TLSConfig("n1", []string{"127.0.0.1"}, 24*time.Hour) // a node's logx.Config.TLS
//
// or, as PEM files for logx.Config.TLSCAFile/TLSCertFile/TLSKeyFile and the
// logx command's -ca/-cert/-key flags:
//
//	logxtls.WriteFiles("certs", []string{"n1", "n2", "n3", "client"}, []string{"127.0.0.1"}, 24*time.Hour)
package logxtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority: its certificate and key.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA valid from an hour ago for validFor.
func NewCA(name string, validFor time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(name, validFor)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue makes a certificate for name, usable by a node as server and as
// client, naming hosts (IP addresses or DNS names: those its peers dial),
// valid for validFor but no longer than the CA.
func (ca *CA) Issue(name string, hosts []string, validFor time.Duration) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("logxtls: no host to name in the certificate")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl, err := template(name, validFor)
	if err != nil {
		return tls.Certificate{}, err
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter // no use past its CA
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Pool returns a pool holding the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// TLSConfig issues a certificate for name and returns the mutual-TLS
// configuration logx.Config.TLS (or a client) wants: the certificate, the
// CA as RootCAs and ClientCAs, and client certificates required.
func (ca *CA) TLSConfig(name string, hosts []string, validFor time.Duration) (*tls.Config, error) {
	cert, err := ca.Issue(name, hosts, validFor)
	if err != nil {
		return nil, err
	}
	pool := ca.Pool()
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}, nil
}

// WriteFiles writes a certificate for each name to dir as PEM, NAME.pem
// and NAME-key.pem, issued by the CA in dir (ca.pem and ca-key.pem): the
// one there, so that certificates for a node added later are trusted by
// the nodes already running, or else a new one. Keys are written with
// mode 0600. A name that is not a plain file name, or names the CA's
// files ("ca", "ca-key"), fails before
// anything is written, and so does a CA half there (one file of the two)
// or one that does not load.
func WriteFiles(dir string, names, hosts []string, validFor time.Duration) error {
	for _, n := range names {
		if n == "" || n != filepath.Base(n) || n == "ca" || n == "ca-key" || n == "." || n == ".." {
			return fmt.Errorf("logxtls: %q is not a usable name", n)
		}
	}
	caFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	ca, err := LoadCA(caFile, keyFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, cerr := os.Stat(caFile); cerr == nil {
			return fmt.Errorf("logxtls: %s is there but not %s: move it away, or put its key beside it", caFile, keyFile)
		}
		if _, kerr := os.Stat(keyFile); kerr == nil {
			return fmt.Errorf("logxtls: %s is there but not %s: move it away, or put its certificate beside it", keyFile, caFile)
		}
		if ca, err = NewCA("logx test CA", validFor); err != nil {
			return err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := writePEM(caFile, "CERTIFICATE", ca.Cert.Raw, 0o644); err != nil {
			return err
		}
		if err := writeKey(keyFile, ca.Key); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	for _, n := range names {
		cert, err := ca.Issue(n, hosts, validFor)
		if err != nil {
			return err
		}
		if err := writePEM(filepath.Join(dir, n+".pem"), "CERTIFICATE", cert.Certificate[0], 0o644); err != nil {
			return err
		}
		if err := writeKey(filepath.Join(dir, n+"-key.pem"), cert.PrivateKey.(*ecdsa.PrivateKey)); err != nil {
			return err
		}
	}
	return nil
}

// LoadCA reads a CA that WriteFiles wrote: its certificate (PEM) and its
// ECDSA private key (PEM, PKCS #8). An error wraps os.ErrNotExist if
// either file is missing.
func LoadCA(certFile, keyFile string) (*CA, error) {
	der, err := readPEM(certFile, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("logxtls: %s: %w", certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("logxtls: %s is not a CA certificate", certFile)
	}
	if der, err = readPEM(keyFile, "PRIVATE KEY"); err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("logxtls: %s: %w", keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("logxtls: %s is not the ECDSA key of %s", keyFile, certFile)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// readPEM returns the bytes of the first PEM block of path, which must be
// of type kind.
func readPEM(path, kind string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != kind {
		return nil, fmt.Errorf("logxtls: %s holds no PEM %s", path, kind)
	}
	return blk.Bytes, nil
}

func template(name string, validFor time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validFor),
	}, nil
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}
