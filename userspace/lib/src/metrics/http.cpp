// cowtrace --serve's HTTP server over libmicrohttpd (see http.hpp).
//
// MHD runs in its "external" mode with epoll: the caller's thread calls
// run(), which waits for events and answers requests, so the handler (the
// tracer's snapshot) never runs concurrently with anything else in
// cowtrace. Idle connections cost an epoll entry and a small memory pool;
// reads and TLS handshakes never block.
#include "cowscope/metrics/http.hpp"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <chrono>
#include <cstring>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "cowscope/base/error.hpp"
#include "cowscope/base/fd.hpp"

namespace cowtrace {

namespace {

// A bound, listening TCP socket (the errors of --serve's address).
cowscope::UniqueFd bind_listen(const ListenAddr &a, std::uint16_t *bound)
{
	int family = a.v6 ? AF_INET6 : AF_INET;
	cowscope::UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
	if (!fd)
		throw cowscope::SysError("failed to create a socket for --serve");
	int one = 1;
	// lets a restarted exporter bind while old connections sit in
	// TIME_WAIT; a port someone listens on still fails with EADDRINUSE
	setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sockaddr_storage ss{};
	socklen_t len;
	if (a.v6) {
		auto *s6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(a.port);
		inet_pton(AF_INET6, a.host.c_str(), &s6->sin6_addr);
		len = sizeof(*s6);
	} else {
		auto *s4 = reinterpret_cast<sockaddr_in *>(&ss);
		s4->sin_family = AF_INET;
		s4->sin_port = htons(a.port);
		inet_pton(AF_INET, a.host.c_str(), &s4->sin_addr);
		len = sizeof(*s4);
	}
	if (bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) != 0) {
		int e = errno;
		if (e == EADDRINUSE)
			throw cowscope::Error(fmt::format("--serve {}: address already in use: another program listens on "
							  "port {}; choose another port",
							  a.text(), a.port));
		if (e == EADDRNOTAVAIL)
			throw cowscope::Error(fmt::format("--serve {}: {} is not an address of this machine", a.text(),
							  a.host));
		throw cowscope::Error(fmt::format("--serve {}: failed to bind: {}", a.text(), std::strerror(e)));
	}
	// a backlog for a burst of connections; beyond it the kernel makes
	// clients retry their SYN
	if (listen(fd.get(), 1024) != 0)
		throw cowscope::SysError(fmt::format("--serve {}: failed to listen", a.text()));
	sockaddr_storage got{};
	socklen_t glen = sizeof(got);
	getsockname(fd.get(), reinterpret_cast<sockaddr *>(&got), &glen);
	*bound = ntohs(a.v6 ? reinterpret_cast<sockaddr_in6 *>(&got)->sin6_port
			    : reinterpret_cast<sockaddr_in *>(&got)->sin_port);
	return fd;
}

// The connection limit that RLIMIT_NOFILE allows, after raising its soft
// limit towards the hard one (256 descriptors kept for the BPF objects,
// /proc reads and the listening socket).
unsigned fit_connections(unsigned wanted)
{
	constexpr rlim_t reserve = 256;
	rlimit rl{};
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return std::min(wanted, 768u);
	rlim_t need = wanted + reserve;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rlimit raised = rl;
		raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? need : std::min(need, rl.rlim_max);
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return wanted;
	return rl.rlim_cur > reserve + 64 ? static_cast<unsigned>(rl.rlim_cur - reserve) : 64;
}

using Digest = std::array<unsigned char, 32>;

bool same_digest(const Digest &a, const Digest &b)
{
	unsigned char d = 0;
	for (std::size_t i = 0; i < a.size(); i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

const char *const kText = "text/plain; charset=utf-8";

} // namespace

struct HttpServer::Impl {
	WebConfig web;
	HttpLimits limits;
	std::uint16_t port = 0;
	std::string host_text;
	MHD_Daemon *daemon = nullptr;
	std::string last_log;	// MHD's last message (why a start failed)
	const Handler *handler = nullptr;	// during run()
	unsigned served = 0;
	// connections closed since the last malloc_trim, and when that was
	unsigned closed = 0;
	std::chrono::steady_clock::time_point trimmed{};
	// users whose password was checked: SHA-256 of "user:password", so
	// that bcrypt (tens of ms by design) runs once per user and password,
	// not per scrape (exporter-toolkit caches likewise)
	std::map<std::string, Digest, std::less<>> accepted;
	AuthThrottle throttle;
	double retry_s = 0;	// the last Throttled answer's Retry-After

	static void log(void *cls, const char *fm, va_list ap)
	{
		char buf[512];
		std::vsnprintf(buf, sizeof buf, fm, ap);
		auto *self = static_cast<Impl *>(cls);
		self->last_log = buf;
		while (!self->last_log.empty() && self->last_log.back() == '\n')
			self->last_log.pop_back();
	}

	static void notify(void *cls, MHD_Connection *, void **, MHD_ConnectionNotificationCode code)
	{
		if (code == MHD_CONNECTION_NOTIFY_CLOSED)
			static_cast<Impl *>(cls)->closed++;
	}

	static MHD_Result reply(MHD_Connection *c, unsigned code, const char *type, std::string_view body,
				const char *allow = nullptr, const char *retry_after = nullptr)
	{
		MHD_Response *r = MHD_create_response_from_buffer(body.size(), const_cast<char *>(body.data()),
								 MHD_RESPMEM_MUST_COPY);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
		if (allow)
			MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
		if (retry_after)
			MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
		MHD_Result ret = MHD_queue_response(c, code, r);
		MHD_destroy_response(r);
		return ret;
	}

	// The client certificate, as client_auth_type wants it: "" if fine,
	// else why not.
	std::string check_client_cert(MHD_Connection *c)
	{
		if (!web.tls() || web.client_auth == ClientAuth::None)
			return "";
		const MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
		if (!ci || !ci->tls_session)
			return "no TLS session";
		auto s = static_cast<gnutls_session_t>(ci->tls_session);
		unsigned n = 0;
		if (!gnutls_certificate_get_peers(s, &n) || n == 0)
			return web.client_auth == ClientAuth::RequireAndVerify ? "a client certificate is required" : "";
		unsigned status = 0;
		int rc = gnutls_certificate_verify_peers2(s, &status);
		if (rc < 0)
			return fmt::format("the client certificate could not be verified: {}", gnutls_strerror(rc));
		if (status != 0) {
			gnutls_datum_t why{};
			std::string text = "the client certificate is not trusted";
			if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0) {
				text = fmt::format("the client certificate is not trusted: {}",
						   std::string_view(reinterpret_cast<char *>(why.data), why.size));
				gnutls_free(why.data);
			}
			return text;
		}
		return "";
	}

	// the client's address, as the throttle keys it ("" if MHD has none)
	static std::string client_address(MHD_Connection *c)
	{
		const MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (!ci || !ci->client_addr)
			return "";
		char buf[INET6_ADDRSTRLEN] = "";
		const sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in *>(sa)->sin_addr, buf, sizeof buf);
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6 *>(sa)->sin6_addr, buf, sizeof buf);
		return buf;
	}

	static double now_s()
	{
		return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
	}

	enum class Auth { Ok, Denied, Throttled };

	// Basic auth: a user and password remembered as right (a SHA-256, no
	// crypt run), else checked by crypt(5) unless this address has
	// guessed wrong too often (AuthThrottle).
	Auth authorized(MHD_Connection *c)
	{
		if (web.users.empty())
			return Auth::Ok;
		char *pass = nullptr;
		char *user = MHD_basic_auth_get_username_password(c, &pass);
		Auth res = Auth::Denied;
		if (user && pass) {
			std::string both = fmt::format("{}:{}", user, pass);
			Digest d{};
			gnutls_hash_fast(GNUTLS_DIG_SHA256, both.data(), both.size(), d.data());
			explicit_bzero(both.data(), both.size());
			auto it = web.users.find(std::string_view(user));
			auto cached = it == web.users.end() ? accepted.end() : accepted.find(it->first);
			std::string from = client_address(c);
			double now = now_s();
			if (cached != accepted.end() && same_digest(cached->second, d)) {
				res = Auth::Ok;
			} else if (!throttle.allowed(from, now)) {
				res = Auth::Throttled;
				retry_s = throttle.retry_after(from, now);
			} else if (it != web.users.end() && password_matches(pass, it->second)) {
				accepted[it->first] = d;
				res = Auth::Ok;
			} else {
				throttle.failed(from, now);
			}
		}
		if (pass) {
			explicit_bzero(pass, std::strlen(pass));
			MHD_free(pass);
		}
		if (user)
			MHD_free(user);
		return res;
	}

	MHD_Result answer(MHD_Connection *c, const char *url, const char *method)
	{
		if (MHD_get_connection_values(c, MHD_HEADER_KIND, nullptr, nullptr) > static_cast<int>(limits.max_headers))
			return reply(c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, kText,
				     fmt::format("more than {} header fields\n", limits.max_headers));
		if (std::string why = check_client_cert(c); !why.empty())
			return reply(c, MHD_HTTP_FORBIDDEN, kText, why + "\n");
		Auth auth = authorized(c);
		if (auth == Auth::Throttled) {
			std::string body = fmt::format("too many wrong passwords from this address: retry in {:.0f} s\n",
						       std::ceil(retry_s));
			return reply(c, MHD_HTTP_TOO_MANY_REQUESTS, kText, body, nullptr,
				     std::to_string(static_cast<long>(std::ceil(retry_s))).c_str());
		}
		if (auth == Auth::Denied) {
			static const char body[] = "unauthorized: this exporter needs a user and password\n";
			MHD_Response *r = MHD_create_response_from_buffer(sizeof body - 1, const_cast<char *>(body),
									 MHD_RESPMEM_PERSISTENT);
			if (!r)
				return MHD_NO;
			MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, kText);
			MHD_Result ret = MHD_queue_basic_auth_fail_response(c, "cowtrace", r);
			MHD_destroy_response(r);
			return ret;
		}
		switch (route(method, url)) {
		case Route::Metrics: {
			const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
			Response resp = (*handler)(accept ? accept : "");
			served++;
			return reply(c, MHD_HTTP_OK, resp.type.c_str(), resp.body);
		}
		case Route::Index:
			return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8",
				     "<html><head><title>cowtrace</title></head><body><h1>cowtrace</h1>"
				     "<p><a href=\"/metrics\">/metrics</a></p></body></html>\n");
		case Route::NotFound:
			return reply(c, MHD_HTTP_NOT_FOUND, kText, "not found: try /metrics\n");
		case Route::MethodNotAllowed:
			break;
		}
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, kText, "only GET and HEAD\n", "GET, HEAD");
	}

	static MHD_Result access(void *cls, MHD_Connection *c, const char *url, const char *method, const char *,
				 const char *, std::size_t *upload_size, void **request)
	{
		auto *self = static_cast<Impl *>(cls);
		static int seen;
		if (!self->handler)
			return MHD_NO;
		if (!*request) {
			// the first call, once the head is in. A method we refuse is
			// answered now: MHD then closes the connection without
			// reading its body. GET and HEAD are answered at the end of
			// the request (the next call): a response queued before
			// that makes MHD close the connection, and a kept-alive one
			// (Prometheus's) would have to handshake again every scrape.
			*request = &seen;
			if (route(method, url) == Route::MethodNotAllowed)
				return self->answer(c, url, method);
			// a body on GET or HEAD: refused before it is read
			const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
								      MHD_HTTP_HEADER_CONTENT_LENGTH);
			if ((len && std::string_view(len) != "0") ||
			    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
				return reply(c, MHD_HTTP_BAD_REQUEST, kText, "GET and HEAD take no body\n");
			return MHD_YES;
		}
		if (*upload_size != 0) {	// cannot happen (no body announced): dropped
			*upload_size = 0;
			return MHD_YES;
		}
		return self->answer(c, url, method);
	}
};

HttpServer::HttpServer(const ListenAddr &addr, const WebConfig &web, const HttpLimits &limits)
	: impl_(std::make_unique<Impl>())
{
	Impl &m = *impl_;
	m.web = web;
	m.limits = limits;
	m.limits.connections = fit_connections(limits.connections);
	m.limits.per_ip = std::min(m.limits.per_ip, m.limits.connections);
	m.host_text = addr.v6 ? fmt::format("[{}]", addr.host) : addr.host;
	cowscope::UniqueFd fd = bind_listen(addr, &m.port);

	unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	std::vector<MHD_OptionItem> o = {
		{MHD_OPTION_LISTEN_SOCKET, fd.get(), nullptr},
		{MHD_OPTION_EXTERNAL_LOGGER, reinterpret_cast<intptr_t>(&Impl::log), &m},
		{MHD_OPTION_CONNECTION_LIMIT, m.limits.connections, nullptr},
		{MHD_OPTION_PER_IP_CONNECTION_LIMIT, m.limits.per_ip, nullptr},
		{MHD_OPTION_CONNECTION_TIMEOUT, m.limits.timeout_s, nullptr},
		{MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<intptr_t>(m.limits.head_bytes), nullptr},
		{MHD_OPTION_NOTIFY_CONNECTION, reinterpret_cast<intptr_t>(&Impl::notify), &m},
	};
	if (web.tls()) {
		flags |= MHD_USE_TLS;
		o.push_back({MHD_OPTION_HTTPS_MEM_CERT, 0, const_cast<char *>(m.web.cert_pem.c_str())});
		o.push_back({MHD_OPTION_HTTPS_MEM_KEY, 0, const_cast<char *>(m.web.key_pem.c_str())});
		// TLS 1.2 and 1.3 only (exporter-toolkit's default minimum)
		o.push_back({MHD_OPTION_HTTPS_PRIORITIES, 0,
			     const_cast<char *>("NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2")});
		// a trust list makes MHD ask each client for its certificate
		if (web.client_auth != ClientAuth::None)
			o.push_back({MHD_OPTION_HTTPS_MEM_TRUST, 0, const_cast<char *>(m.web.client_ca_pem.c_str())});
	}
	o.push_back({MHD_OPTION_END, 0, nullptr});
	m.daemon = MHD_start_daemon(flags, 0, nullptr, nullptr, &Impl::access, &m, MHD_OPTION_ARRAY, o.data(),
				    MHD_OPTION_END);
	if (!m.daemon)
		throw cowscope::Error(fmt::format("--serve {}: the HTTP server did not start: {}{}", addr.text(),
						  m.last_log.empty() ? "libmicrohttpd gave no reason" : m.last_log,
						  web.tls() ? fmt::format(" (cert_file {}, key_file {})", web.cert_file,
									  web.key_file)
							    : ""));
	(void)fd.release();	// MHD closes it in MHD_stop_daemon
}

HttpServer::~HttpServer()
{
	if (impl_ && impl_->daemon)
		MHD_stop_daemon(impl_->daemon);
}

std::uint16_t HttpServer::port() const
{
	return impl_->port;
}

const HttpLimits &HttpServer::limits() const
{
	return impl_->limits;
}

std::string HttpServer::url() const
{
	return fmt::format("{}://{}:{}/metrics", impl_->web.tls() ? "https" : "http", impl_->host_text, impl_->port);
}

unsigned HttpServer::run(int timeout_ms, const Handler &handler)
{
	Impl &m = *impl_;
	m.handler = &handler;
	m.served = 0;
	MHD_run_wait(m.daemon, timeout_ms);
	m.handler = nullptr;
	// After a burst of connections (a flood, many scrapers) has gone, give
	// the memory their pools took back to the kernel: malloc keeps freed
	// chunks in its heap, and the next burst would land beside them, so
	// that VmRSS would creep up burst after burst. At most once a second,
	// after 64 closed connections or more.
	auto now = std::chrono::steady_clock::now();
	if (m.closed >= 64 && now - m.trimmed >= std::chrono::seconds(1)) {
		malloc_trim(0);
		m.closed = 0;
		m.trimmed = now;
	}
	return m.served;
}

} // namespace cowtrace
