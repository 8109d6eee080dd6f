/*
 * Linked into the static cowtrace (cowhttp_static's INTERFACE sources,
 * userspace/lib/CMakeLists.txt): what libgnutls.a needs that a static
 * program cannot or should not take from Debian.
 *
 * 1. getpwuid_r(3), renamed cowscope_static_getpwuid_r in the build's copy
 * of libgnutls.a (objcopy --redefine-sym, as libdw.a's dlopen): GnuTLS's
 * one call looks up the home directory for ~/.gnutls/known_hosts (its
 * trust-on-first-use store, which cowtrace does not use) when $HOME is
 * unset. glibc's static getpwuid_r needs the build machine's glibc and NSS
 * modules at run time, which is what the linker warns about. This one
 * finds no entry, as for a user without a passwd line, and GnuTLS goes on
 * without a home directory.
 *
 * 2. p11-kit, which Debian ships as a
 * shared library only (libp11-kit-dev has no libp11-kit.a) while
 * libgnutls.a calls it for PKCS#11: tokens, smart cards and "pkcs11:" URLs
 * for keys and certificates, and p11-kit's trust module.
 *
 * cowtrace --serve reads its certificate, key and client CA from PEM files
 * (--web-config) and never asks GnuTLS for PKCS#11, the system trust store
 * or a token PIN. With these, GnuTLS behaves as if no PKCS#11 module were
 * configured: loading modules finds none, a "pkcs11:" URL fails to parse
 * (the web config refuses one before that: it names files). p11_kit_space_*
 * are plain string helpers and do what p11-kit's do. The dynamic build (the
 * Debian package, COWSCOPE_STATIC=OFF) links Debian's libp11-kit.so.0
 * instead, through libgnutls.so.30.
 *
 * The prototypes come from p11-kit's own headers (libp11-kit-dev, which
 * libgnutls28-dev depends on), so a changed signature fails the build.
 */
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pin.h>
#include <p11-kit/uri.h>

/* Stand-ins: most of them ignore most of their arguments. */
#pragma GCC diagnostic ignored "-Wunused-parameter"

int cowscope_static_getpwuid_r(uid_t uid, struct passwd *pwd, char *buf, size_t buflen, struct passwd **result)
{
	*result = NULL;
	return 0;	/* no entry (getpwuid_r(3): 0 with *result NULL) */
}

static const char no_p11kit[] = "PKCS#11 is not available: this static cowtrace is built without p11-kit";

CK_FUNCTION_LIST **p11_kit_modules_load(const char *reserved, int flags)
{
	return NULL;
}

CK_FUNCTION_LIST *p11_kit_module_load(const char *module_path, int flags)
{
	return NULL;
}

void p11_kit_module_release(CK_FUNCTION_LIST *module)
{
}

CK_RV p11_kit_module_finalize(CK_FUNCTION_LIST *module)
{
	return CKR_GENERAL_ERROR;
}

char *p11_kit_module_get_name(CK_FUNCTION_LIST *module)
{
	return NULL;
}

int p11_kit_module_get_flags(CK_FUNCTION_LIST *module)
{
	return 0;
}

char *p11_kit_config_option(CK_FUNCTION_LIST *module, const char *option)
{
	return NULL;
}

const char *p11_kit_message(void)
{
	return no_p11kit;
}

const char *p11_kit_strerror(CK_RV rv)
{
	return no_p11kit;
}

/* the length of a PKCS#11 blank-padded string without its trailing spaces */
size_t p11_kit_space_strlen(const unsigned char *string, size_t max_length)
{
	size_t i = max_length;
	while (i > 0 && string[i - 1] == ' ')
		i--;
	return i;
}

char *p11_kit_space_strdup(const unsigned char *string, size_t max_length)
{
	size_t n = p11_kit_space_strlen(string, max_length);
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	memcpy(out, string, n);
	out[n] = '\0';
	return out;
}

P11KitUri *p11_kit_uri_new(void)
{
	return NULL;	/* GnuTLS reports GNUTLS_E_MEMORY_ERROR */
}

void p11_kit_uri_free(P11KitUri *uri)
{
}

int p11_kit_uri_parse(const char *string, P11KitUriType uri_type, P11KitUri *uri)
{
	return P11_KIT_URI_BAD_SCHEME;
}

int p11_kit_uri_format(P11KitUri *uri, P11KitUriType uri_type, char **string)
{
	*string = NULL;
	return P11_KIT_URI_NO_MEMORY;
}

CK_ATTRIBUTE_PTR p11_kit_uri_get_attribute(P11KitUri *uri, CK_ATTRIBUTE_TYPE attr_type)
{
	return NULL;
}

CK_ATTRIBUTE_PTR p11_kit_uri_get_attributes(P11KitUri *uri, CK_ULONG *n_attrs)
{
	*n_attrs = 0;
	return NULL;
}

int p11_kit_uri_set_attribute(P11KitUri *uri, CK_ATTRIBUTE_PTR attr)
{
	return P11_KIT_URI_NO_MEMORY;
}

CK_INFO_PTR p11_kit_uri_get_module_info(P11KitUri *uri)
{
	return NULL;
}

CK_TOKEN_INFO_PTR p11_kit_uri_get_token_info(P11KitUri *uri)
{
	return NULL;
}

int p11_kit_uri_match_module_info(const P11KitUri *uri, const CK_INFO *info)
{
	return 0;
}

int p11_kit_uri_match_token_info(const P11KitUri *uri, const CK_TOKEN_INFO *token_info)
{
	return 0;
}

const char *p11_kit_uri_get_pin_source(const P11KitUri *uri)
{
	return NULL;
}

const char *p11_kit_uri_get_pin_value(const P11KitUri *uri)
{
	return NULL;
}

P11KitPin *p11_kit_pin_new_for_string(const char *value)
{
	return NULL;
}

P11KitPin *p11_kit_pin_request(const char *pin_source, P11KitUri *pin_uri, const char *pin_description,
			       P11KitPinFlags pin_flags)
{
	return NULL;
}

P11KitPin *p11_kit_pin_file_callback(const char *pin_source, P11KitUri *pin_uri, const char *pin_description,
				     P11KitPinFlags pin_flags, void *callback_data)
{
	return NULL;
}

int p11_kit_pin_register_callback(const char *pin_source, p11_kit_pin_callback callback, void *callback_data,
				  p11_kit_pin_destroy_func callback_destroy)
{
	return -1;
}

void p11_kit_pin_unregister_callback(const char *pin_source, p11_kit_pin_callback callback, void *callback_data)
{
}

const unsigned char *p11_kit_pin_get_value(P11KitPin *pin, size_t *length)
{
	if (length)
		*length = 0;
	return NULL;
}

size_t p11_kit_pin_get_length(P11KitPin *pin)
{
	return 0;
}

void p11_kit_pin_unref(P11KitPin *pin)
{
}
