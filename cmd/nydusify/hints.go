package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nydus-go/nydusify/imageref"
	"github.com/nydus-go/nydusify/registry"
)

// hint returns the fix for a failure users often meet whose error names it in the terms of
// the network or the library rather than of the flags of cmd (the command that failed), or "".
func hint(cmd *cobra.Command, err error) string {
	var (
		terr    *transport.Error
		certErr *tls.CertificateVerificationError
		authErr x509.UnknownAuthorityError
	)
	switch {
	case errors.Is(err, http.ErrSchemeMismatch):
		return "the registry speaks plain HTTP, not HTTPS: add --plain-http to use plain HTTP with it"
	case errors.Is(err, registry.ErrPlainHTTPRefused):
		return "plain HTTP is used only with --plain-http (or for a loopback registry): add --plain-http to allow it"
	case errors.As(err, &certErr), errors.As(err, &authErr):
		return "the registry's TLS certificate is not trusted here: install its CA" + insecureFlags(cmd)
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden):
		return "credentials come from the docker config ($DOCKER_CONFIG/config.json): log in with docker login (or podman login) for this registry, with a user allowed to push for a target"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing accepts connections there: is the server (registry or S3 endpoint) running, and are host and port right?"
	}
	return ""
}

// insecureFlags names cmd's flags that skip TLS verification, as the
// alternative to installing a CA, or "" when it has none.
func insecureFlags(cmd *cobra.Command) string {
	var names []string
	if cmd != nil {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.HasSuffix(f.Name, "insecure") {
				names = append(names, "--"+f.Name)
			}
		})
	}
	if len(names) == 0 {
		return ""
	}
	return ", or skip verification with " + strings.Join(names, " or ")
}

// noteLoopback logs, at most once, that a registry named by refs is on a loopback host and
// so may be reached over plain HTTP without --plain-http (the loopback rule); nothing is
// logged when plainHTTP is set, as then every registry may be.
func noteLoopback(plainHTTP bool, refs ...string) {
	if plainHTTP {
		return
	}
	for _, s := range refs {
		r, err := imageref.Parse(s)
		if err != nil || r.Kind != imageref.Registry {
			continue
		}
		ref, err := name.ParseReference(r.Name)
		if err != nil {
			continue
		}
		if host := ref.Context().RegistryStr(); registry.IsLoopback(host) {
			logrus.Infof("registry %s is on a loopback host: plain HTTP is allowed to it without --plain-http, "+
				"as go-containerregistry and containerd allow it; any other registry needs --plain-http for plain HTTP", host)
			return
		}
	}
}
