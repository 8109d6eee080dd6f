// cowtrace --serve --web-config (web_config.hpp): libyaml's document
// loader, a strict walk of its nodes, libcrypt for the hashes.
#include "cowscope/metrics/web_config.hpp"

#include <crypt.h>
#include <yaml.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"

namespace cowtrace {

namespace {

constexpr std::size_t kMaxFile = 1 << 20;

// The loaded document, freed on every path.
struct Document {
	yaml_parser_t parser;
	yaml_document_t doc;
	bool have_parser = false, have_doc = false;
	~Document()
	{
		if (have_doc)
			yaml_document_delete(&doc);
		if (have_parser)
			yaml_parser_delete(&parser);
	}
};

class Walker {
public:
	Walker(yaml_document_t *doc, std::string_view origin) : doc_(doc), origin_(origin) {}

	[[noreturn]] void fail(const yaml_node_t *at, const std::string &why) const
	{
		throw cowscope::UsageError(fmt::format("--web-config {}:{}: {}", origin_, at ? at->start_mark.line + 1 : 1,
						       why));
	}
	yaml_node_t *node(int index) const { return yaml_document_get_node(doc_, index); }
	static bool is_null(const yaml_node_t *n)
	{
		if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
			return false;
		std::string_view v = scalar(n);
		return v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL";
	}
	static std::string_view scalar(const yaml_node_t *n)
	{
		return {reinterpret_cast<const char *>(n->data.scalar.value), n->data.scalar.length};
	}
	// A string value: a scalar, not null (`what` names the key).
	std::string text(const yaml_node_t *n, std::string_view what) const
	{
		if (n->type != YAML_SCALAR_NODE || is_null(n))
			fail(n, fmt::format("{}: expected a string", what));
		std::string_view v = scalar(n);
		if (v.find('\0') != std::string_view::npos)
			fail(n, fmt::format("{}: a NUL byte in the value", what));
		return std::string(v);
	}
	// The pairs of a mapping (a null value: none), each key a distinct
	// string; f(key, key node, value node).
	template <class F> void each(const yaml_node_t *map, std::string_view what, F &&f) const
	{
		if (is_null(map))
			return;
		if (map->type != YAML_MAPPING_NODE)
			fail(map, fmt::format("{}: expected a mapping of keys to values", what));
		std::set<std::string, std::less<>> seen;
		for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
			yaml_node_t *k = node(p->key), *v = node(p->value);
			if (!k || !v)
				fail(map, fmt::format("{}: a broken pair", what));
			std::string key = text(k, fmt::format("a key in {}", what));
			if (!seen.insert(key).second)
				fail(k, fmt::format("{}: \"{}\" given twice", what, key));
			f(key, k, v);
		}
	}

private:
	yaml_document_t *doc_;
	std::string_view origin_;
};

// exporter-toolkit keys that cowtrace does not implement: refused by name
bool toolkit_key(std::string_view k)
{
	static const char *const keys[] = {"http_server_config", "rate_limit", "cert", "key", "client_ca",
					   "min_version", "max_version", "cipher_suites", "curve_preferences",
					   "prefer_server_cipher_suites", "client_allowed_sans"};
	for (const char *x : keys)
		if (k == x)
			return true;
	return false;
}

std::string read_limited(const std::string &path, std::string_view what)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		throw cowscope::Error(fmt::format("--web-config: cannot read {} {}: {}", what, path, std::strerror(errno)));
	std::string s;
	char buf[8192];
	while (in.read(buf, sizeof buf) || in.gcount() > 0) {
		s.append(buf, static_cast<std::size_t>(in.gcount()));
		if (s.size() > kMaxFile)
			throw cowscope::UsageError(fmt::format("--web-config: {} {} is larger than 1 MiB", what, path));
	}
	if (in.bad())
		throw cowscope::Error(fmt::format("--web-config: cannot read {} {}: {}", what, path, std::strerror(errno)));
	return s;
}

// tls_server_config (`k` its key): the certificate and key, and whether
// (against which CA) clients' certificates are verified.
void parse_tls(const Walker &w, const yaml_node_t *k, const yaml_node_t *v, WebConfig &c)
{
	const yaml_node_t *ca_at = nullptr, *auth_at = v;
	std::string auth = "NoClientCert";
	w.each(v, "tls_server_config", [&](const std::string &tk, yaml_node_t *tkn, yaml_node_t *tv) {
		if (tk == "cert_file")
			c.cert_file = w.text(tv, "cert_file");
		else if (tk == "key_file")
			c.key_file = w.text(tv, "key_file");
		else if (tk == "client_ca_file") {
			c.client_ca_file = w.text(tv, "client_ca_file");
			ca_at = tv;
		} else if (tk == "client_auth_type") {
			auth = w.text(tv, "client_auth_type");
			auth_at = tv;
		} else if (toolkit_key(tk))
			w.fail(tkn, fmt::format("tls_server_config: {} is not supported by cowtrace (it takes "
						"cert_file, key_file, client_auth_type, client_ca_file)", tk));
		else
			w.fail(tkn, fmt::format("tls_server_config: unknown key \"{}\" (expected cert_file, "
						"key_file, client_auth_type, client_ca_file)", tk));
	});
	if (c.cert_file.empty() || c.key_file.empty())
		w.fail(k, "tls_server_config: both cert_file and key_file are needed (PEM files)");
	if (auth == "NoClientCert")
		c.client_auth = ClientAuth::None;
	else if (auth == "VerifyClientCertIfGiven")
		c.client_auth = ClientAuth::VerifyIfGiven;
	else if (auth == "RequireAndVerifyClientCert")
		c.client_auth = ClientAuth::RequireAndVerify;
	else if (auth == "RequestClientCert" || auth == "RequireAnyClientCert")
		w.fail(auth_at, fmt::format("client_auth_type: {} is not supported by cowtrace (it never "
					    "takes a certificate it does not verify): use "
					    "VerifyClientCertIfGiven or RequireAndVerifyClientCert",
					    auth));
	else
		w.fail(auth_at, fmt::format("client_auth_type: expected NoClientCert, "
					    "VerifyClientCertIfGiven or RequireAndVerifyClientCert, got "
					    "\"{}\"",
					    auth));
	if (c.client_auth != ClientAuth::None && c.client_ca_file.empty())
		w.fail(auth_at, fmt::format("client_auth_type: {} needs client_ca_file (the CA that "
					    "signs the clients' certificates)",
					    auth));
	if (c.client_auth == ClientAuth::None && !c.client_ca_file.empty())
		w.fail(ca_at, "client_ca_file is set but client_auth_type is NoClientCert: set "
			      "client_auth_type to RequireAndVerifyClientCert or VerifyClientCertIfGiven");
}

// basic_auth_users: each user's crypt(5) hash, one libcrypt takes and not
// a legacy one.
void parse_users(const Walker &w, const yaml_node_t *v, WebConfig &c)
{
	w.each(v, "basic_auth_users", [&](const std::string &user, yaml_node_t *un, yaml_node_t *hv) {
		if (user.empty() || user.find(':') != std::string::npos)
			w.fail(un, fmt::format("basic_auth_users: a user name is not empty and has no ':', "
					       "got \"{}\"", user));
		std::string hash = w.text(hv, fmt::format("basic_auth_users: {}", user));
		// every hash worth taking starts with $ID$; DES's do not
		// (and a password in clear passes for one)
		if (hash.size() < 13 || hash[0] != '$')
			w.fail(hv, fmt::format("basic_auth_users: {}: not a crypt(5) hash libcrypt "
					       "takes (bcrypt $2b$..., yescrypt $y$...; a password in "
					       "clear is no hash)",
					       user));
		int salt = crypt_checksalt(hash.c_str());
		if (salt == CRYPT_SALT_METHOD_LEGACY)
			w.fail(hv, fmt::format("basic_auth_users: {}: a legacy hash (DES, MD5...): use "
					       "bcrypt ($2b$, htpasswd -B) or yescrypt ($y$, mkpasswd)",
					       user));
		if (salt != CRYPT_SALT_OK)
			w.fail(hv, fmt::format("basic_auth_users: {}: not a crypt(5) hash libcrypt "
					       "takes (bcrypt $2b$..., yescrypt $y$...)",
					       user));
		c.users.emplace(user, std::move(hash));
	});
}

} // namespace

std::string WebConfig::describe() const
{
	std::string s = tls() ? "TLS" : "plain HTTP";
	if (client_auth == ClientAuth::RequireAndVerify)
		s += ", client certificates required";
	else if (client_auth == ClientAuth::VerifyIfGiven)
		s += ", client certificates verified if given";
	if (!users.empty())
		s += fmt::format(", basic auth ({} user{})", users.size(), users.size() == 1 ? "" : "s");
	return s;
}

WebConfig parse_web_config(std::string_view text, std::string_view origin)
{
	WebConfig c;
	if (text.size() > kMaxFile)
		throw cowscope::UsageError(fmt::format("--web-config {}: larger than 1 MiB", origin));
	Document d;
	if (!yaml_parser_initialize(&d.parser))
		throw cowscope::Error("--web-config: libyaml could not start (out of memory)");
	d.have_parser = true;
	yaml_parser_set_input_string(&d.parser, reinterpret_cast<const unsigned char *>(text.data()), text.size());
	if (!yaml_parser_load(&d.parser, &d.doc)) {
		const yaml_mark_t &m = d.parser.problem_mark;
		throw cowscope::UsageError(fmt::format("--web-config {}:{}: not valid YAML: {}{}{}", origin, m.line + 1,
						       d.parser.problem ? d.parser.problem : "a syntax error",
						       d.parser.context ? " " : "", d.parser.context ? d.parser.context : ""));
	}
	d.have_doc = true;
	Walker w(&d.doc, origin);
	yaml_node_t *root = yaml_document_get_root_node(&d.doc);
	if (!root)	// an empty file: no TLS, no users (as exporter-toolkit)
		return c;
	w.each(root, "the top level", [&](const std::string &key, yaml_node_t *k, yaml_node_t *v) {
		if (key == "tls_server_config")
			parse_tls(w, k, v, c);
		else if (key == "basic_auth_users")
			parse_users(w, v, c);
		else if (toolkit_key(key))
			w.fail(k, fmt::format("{} is not supported by cowtrace (it takes tls_server_config and "
					      "basic_auth_users)",
					      key));
		else
			w.fail(k, fmt::format("unknown key \"{}\" (expected tls_server_config, basic_auth_users)", key));
	});
	return c;
}

WebConfig load_web_config(const std::string &path)
{
	WebConfig c = parse_web_config(read_limited(path, "file"), path);
	std::string dir;
	if (std::size_t slash = path.rfind('/'); slash != std::string::npos)
		dir = path.substr(0, slash + 1);
	auto resolve = [&](std::string &f) {
		if (!f.empty() && f[0] != '/')
			f = dir + f;
	};
	resolve(c.cert_file);
	resolve(c.key_file);
	resolve(c.client_ca_file);
	if (c.tls()) {
		c.cert_pem = read_limited(c.cert_file, "cert_file");
		c.key_pem = read_limited(c.key_file, "key_file");
	}
	if (!c.client_ca_file.empty())
		c.client_ca_pem = read_limited(c.client_ca_file, "client_ca_file");
	return c;
}

bool password_matches(std::string_view password, const std::string &hash)
{
	if (password.find('\0') != std::string_view::npos)
		return false;
	std::string phrase(password);
	// crypt_data is about 32 KiB: not on the stack; zeroed before first use
	auto data = std::make_unique<crypt_data>();
	std::memset(data.get(), 0, sizeof(crypt_data));
	const char *out = crypt_rn(phrase.c_str(), hash.c_str(), data.get(), sizeof(crypt_data));
	bool same = false;
	if (out) {
		std::size_t n = std::strlen(out);
		// the length of a hash is no secret; the bytes are compared in
		// full, whatever the first difference
		unsigned char diff = n == hash.size() ? 0 : 1;
		for (std::size_t i = 0; i < n && i < hash.size(); i++)
			diff |= static_cast<unsigned char>(out[i] ^ hash[i]);
		same = diff == 0;
	}
	explicit_bzero(data.get(), sizeof(crypt_data));
	explicit_bzero(phrase.data(), phrase.size());
	return same;
}

} // namespace cowtrace
