// cowtrace --serve --web-config FILE: TLS and HTTP basic auth for the
// exporter, with the keys of Prometheus exporter-toolkit's web
// configuration file (what node_exporter's --web.config.file reads), so
// that a Prometheus user writes what they already know:
//
//   tls_server_config:
//     cert_file: /etc/cowscope/tls/cowtrace.crt   # PEM; relative paths are
//     key_file: /etc/cowscope/tls/cowtrace.key    # relative to FILE's folder
//     client_auth_type: RequireAndVerifyClientCert   # optional
//     client_ca_file: /etc/cowscope/tls/clients-ca.crt
//   basic_auth_users:
//     prometheus: $2b$10$...   # crypt(5) hashes: bcrypt ($2b$/$2y$/$2a$),
//                              # yescrypt ($y$), sha512crypt ($6$)
//
// Parsed with libyaml (Debian's libyaml-0-2: the parser PyYAML and others
// use) and checked strictly: an unknown key, a duplicate, a value of the
// wrong kind or a hash libcrypt does not take is an error naming the line.
// The keys exporter-toolkit has and cowtrace does not (http_server_config,
// min_version, cipher_suites, client_allowed_sans...) are refused by name,
// never ignored.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace cowtrace {

enum class ClientAuth {
	None,			// NoClientCert (the default)
	VerifyIfGiven,		// VerifyClientCertIfGiven: a certificate given must verify
	RequireAndVerify,	// RequireAndVerifyClientCert: one must be given, and verify
};

struct WebConfig {
	// tls_server_config: TLS when cert_file is set (key_file then too)
	std::string cert_file, key_file, client_ca_file;
	ClientAuth client_auth = ClientAuth::None;
	// basic_auth_users: name -> crypt(5) hash; empty: no authentication
	std::map<std::string, std::string, std::less<>> users;
	// the files' PEM text (load_web_config reads them; parse_web_config does not)
	std::string cert_pem, key_pem, client_ca_pem;

	bool tls() const { return !cert_file.empty(); }
	std::string describe() const;	// "TLS, client certificates required, basic auth (1 user)"
};

// The YAML text of a web configuration, checked (pure: reads no file, so
// a fuzz target can call it with any bytes; relative paths stay as
// written). `origin` names the text in errors: "ORIGIN:LINE: ...". Throws
// cowscope::UsageError.
WebConfig parse_web_config(std::string_view text, std::string_view origin);

// Read FILE (at most 1 MiB), parse it, resolve relative paths against
// FILE's folder and read the certificate, key and CA files. Throws
// cowscope::UsageError for a bad configuration, cowscope::Error for a file
// that cannot be read.
WebConfig load_web_config(const std::string &path);

// Whether `password` is the one `hash` (a crypt(5) hash) was made from:
// libcrypt's crypt_rn, then a comparison whose time does not depend on
// where the two differ.
bool password_matches(std::string_view password, const std::string &hash);

} // namespace cowtrace
