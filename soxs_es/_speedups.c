/* Compiled forms of two pure functions on the hot path of a large ingest (in Python, with ncompress, they were
 * ~60% of the header-reading workers' time):
 *
 *   lzw_decompress(data: bytes) -> bytes
 *       Unix `compress` (.Z) data decompressed; ValueError when it is not valid LZW. The same result as
 *       ncompress.decompress (which `soxs_es.fitsio` falls back to when this module was not built).
 *
 *   wanted_cards(raw: bytes, end: int, want: dict[bytes, str], parse_value: callable) -> dict[str, value]
 *       The values of the wanted cards of a header (cards 0 .. end/80 - 1), as
 *       `soxs_es.pure.fitscards._parse_wanted` finds them: `want` maps keyword bytes to the keyword; a value
 *       field in a form this code does not decode itself (an escaped quote, a non-ASCII byte, a value that
 *       is neither T/F, a plain integer nor a plain decimal number) is handed to `parse_value` as text, so
 *       the rules of what a value is stay in one place, the Python one.
 *
 * Both are pure: bytes in, values out. Tests check each against its Python counterpart on generated input.
 *
 *   folder_entries(path: str, follow: bool) -> list[tuple[str, bool, bool, int | None, int | None]]
 *       (name, is a folder, is a link, size, mtime_ns) of each entry of a folder, as `soxs_es.listing`'s Python
 *       `_folder_entries` gives them: of a link's target when `follow` (a broken link, or an entry gone
 *       meanwhile: size and mtime None). Not pure - it reads the disk - but a listing of tens of thousands of
 *       frames is mostly the interpreter's work per entry in Python. A test compares the two.
 *
 *   digests_below(root: str, rel: str, suffixes: tuple[bytes, ...]) -> dict[str, bytes]
 *       Every folder below `root` holding files whose names end (ASCII case-blind) with one of `suffixes`, and
 *       the digest of those files (`soxs_es.listing.folder_digest`: sums of the CRC-32 and the Adler-32 of each
 *       file's "path\0size\0mtime_ns", and their count), folders and paths relative (`rel` names `root`), as
 *       `soxs_es.listing`'s Python `_digests_below` finds them: dot names left out, a link's target stat'ed, a
 *       broken link left out, a linked folder not entered, a folder that cannot be read skipped. The walk runs
 *       without the interpreter lock, so that a thread lists while the interpreter goes on; a test compares
 *       the two.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------------------------------------- */
/* LZW, as written by compress(1): a 3-byte preamble (1f 9d, then max bits and the block-mode flag), codes of
 * 9 bits growing to at most 16, least significant bit first. Codes are written in groups of 8 (n_bits bytes);
 * when the code width grows, or after a CLEAR code (256, block mode), the rest of the current group is
 * padding and is skipped. */

#define LZW_FIRST_WIDTH 9
#define LZW_MAX_WIDTH 16
#define LZW_CLEAR 256

static PyObject *lzw_error(const char *why)
{
    PyErr_SetString(PyExc_ValueError, why);
    return NULL;
}

static PyObject *lzw_decompress(PyObject *self, PyObject *arg)
{
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *src = in.buf;
    Py_ssize_t size = in.len;
    PyObject *out = NULL;
    Py_ssize_t *entry_at = NULL, *entry_len = NULL;

    if (size < 3 || src[0] != 0x1f || src[1] != 0x9d) {
        lzw_error("not in compressed format");
        goto done;
    }
    int max_width = src[2] & 0x1f;
    int block_mode = (src[2] & 0x80) != 0;
    /* compress never writes fewer than 9 bits: such a preamble is a damaged file, refused here at once (the
     * one place this may differ from ncompress, which starts decoding it) */
    if (max_width > LZW_MAX_WIDTH || max_width < LZW_FIRST_WIDTH) {
        lzw_error("compressed with an unsupported number of bits");
        goto done;
    }
    /* Every entry of the table is a string already written: the previous code's output and one more byte.
     * So an entry is kept as where it starts in the output and its length, and a code is decoded by copying
     * from earlier output (no prefix chains walked backwards, no stack). */
    long table_end = 1L << max_width; /* no entry is made at or past this code */
    entry_at = PyMem_Malloc(sizeof(Py_ssize_t) * table_end);
    entry_len = PyMem_Malloc(sizeof(Py_ssize_t) * table_end);
    if (!entry_at || !entry_len) {
        PyErr_NoMemory();
        goto done;
    }

    Py_ssize_t capacity = size * 8 + 1024, used = 0;
    out = PyBytes_FromStringAndSize(NULL, capacity);
    if (!out)
        goto done;
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);

    int width = LZW_FIRST_WIDTH;
    long max_code = (1L << width) - 1; /* past it the width grows */
    long next_free = block_mode ? 257 : 256;
    Py_ssize_t previous_at = -1, previous_len = 0; /* the previous code's output; -1: none yet */
    /* bit positions, counted from the end of the preamble */
    const unsigned char *bits = src + 3;
    Py_ssize_t bits_len = size - 3;
    unsigned long long total_bits = (unsigned long long)bits_len * 8, group_start = 0, at = 0;

    for (;;) {
        if (next_free > max_code && width < max_width) {
            /* the rest of the group is padding; the next group has codes one bit wider */
            unsigned long long span = (unsigned long long)width * 8;
            at = group_start + (at - group_start + span - 1) / span * span;
            group_start = at;
            ++width;
            max_code = width == max_width ? table_end : (1L << width) - 1;
        }
        if (at + (unsigned long long)width > total_bits)
            break;
        Py_ssize_t byte = (Py_ssize_t)(at >> 3);
        unsigned long word = bits[byte];
        if (byte + 1 < bits_len) word |= (unsigned long)bits[byte + 1] << 8;
        if (byte + 2 < bits_len) word |= (unsigned long)bits[byte + 2] << 16;
        long code = (long)((word >> (at & 7)) & ((1UL << width) - 1));
        at += width;

        if (code == LZW_CLEAR && block_mode && previous_at >= 0) {
            unsigned long long span = (unsigned long long)width * 8;
            at = group_start + (at - group_start + span - 1) / span * span;
            group_start = at;
            width = LZW_FIRST_WIDTH;
            max_code = (1L << width) - 1;
            next_free = 256; /* the entry made after the next code lands on 256, which is never read */
            continue;
        }
        Py_ssize_t length;
        if (code < 256)
            length = 1;
        else if (previous_at < 0 || code > next_free)
            goto corrupt;
        else if (code < next_free)
            length = entry_len[code];
        else
            length = previous_len + 1; /* the code being defined: the previous output and its first byte */
        if (used + length > capacity) {
            while (used + length > capacity)
                capacity *= 2;
            if (_PyBytes_Resize(&out, capacity) < 0)
                goto done;
            dst = (unsigned char *)PyBytes_AS_STRING(out);
        }
        if (code < 256)
            dst[used] = (unsigned char)code;
        else if (code < next_free)
            memcpy(dst + used, dst + entry_at[code], (size_t)length); /* ends at or before `used` */
        else {
            memcpy(dst + used, dst + previous_at, (size_t)previous_len);
            dst[used + previous_len] = dst[previous_at];
        }
        if (previous_at >= 0 && next_free < table_end) {
            entry_at[next_free] = previous_at;
            entry_len[next_free] = previous_len + 1; /* the byte after it is this code's first */
            ++next_free;
        }
        previous_at = used;
        previous_len = length;
        used += length;
    }
    if (_PyBytes_Resize(&out, used) < 0)
        out = NULL;
    goto done;
corrupt:
    lzw_error("corrupt input");
    Py_CLEAR(out);
done:
    PyMem_Free(entry_at);
    PyMem_Free(entry_len);
    PyBuffer_Release(&in);
    return out;
}

/* ---------------------------------------------------------------------------------------------------- */
/* Header cards. */

#define CARD 80

/* A value decoded here, or NULL with no error set when it is for `parse_value` (or NULL with an error). */
static PyObject *card_value(const char *field, Py_ssize_t len, int *handed_over)
{
    *handed_over = 0;
    for (Py_ssize_t i = 0; i < len; ++i)
        if ((unsigned char)field[i] < 0x20 || (unsigned char)field[i] > 0x7e)
            goto hand_over; /* decoding with replacement, and Unicode whitespace: Python's business */
    Py_ssize_t a = 0, b = len;
    while (a < b && field[a] == ' ')
        ++a;
    while (b > a && field[b - 1] == ' ')
        --b;
    if (a == b)
        Py_RETURN_NONE;
    if (field[a] == '\'') {
        const char *close = memchr(field + a + 1, '\'', (size_t)(b - a - 1));
        if (close == NULL || (close + 1 < field + b && close[1] == '\''))
            goto hand_over; /* unterminated, or an escaped quote */
        const char *start = field + a + 1, *stop = close;
        while (stop > start && stop[-1] == ' ')
            --stop;
        PyObject *text = PyUnicode_DecodeASCII(start, stop - start, NULL);
        if (text)
            PyUnicode_InternInPlace(&text);
        return text;
    }
    const char *slash = memchr(field + a, '/', (size_t)(b - a));
    if (slash != NULL) {
        b = slash - field;
        while (b > a && field[b - 1] == ' ')
            --b;
        if (a == b)
            Py_RETURN_NONE;
    }
    const char *v = field + a;
    Py_ssize_t n = b - a;
    if (n == 1 && v[0] == 'T')
        Py_RETURN_TRUE;
    if (n == 1 && v[0] == 'F')
        Py_RETURN_FALSE;
    char buf[CARD + 1];
    memcpy(buf, v, (size_t)n);
    buf[n] = '\0';
    Py_ssize_t first = (v[0] == '+' || v[0] == '-') ? 1 : 0;
    int digits = first < n, number = 1;
    for (Py_ssize_t i = first; i < n; ++i) {
        if (v[i] < '0' || v[i] > '9')
            digits = 0;
        if (!strchr("0123456789+-.eED", v[i]))
            number = 0;
    }
    if (digits)
        return PyLong_FromString(buf, NULL, 10);
    if (!number)
        goto hand_over;
    for (Py_ssize_t i = 0; i < n; ++i)
        if (buf[i] == 'D')
            buf[i] = 'E';
    char *stop = NULL;
    double x = PyOS_string_to_double(buf, &stop, NULL);
    if (x == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        goto hand_over;
    }
    if (stop != buf + n)
        goto hand_over;
    return PyFloat_FromDouble(x);
hand_over:
    *handed_over = 1;
    return NULL;
}

static PyObject *wanted_cards(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    Py_ssize_t end;
    PyObject *want, *parse_value;
    if (!PyArg_ParseTuple(args, "y*nO!O:wanted_cards", &raw, &end, &PyDict_Type, &want, &parse_value))
        return NULL;
    PyObject *values = NULL;
    if (end < 0 || end > raw.len || end % CARD != 0) {
        PyErr_SetString(PyExc_ValueError, "end must be a card boundary within the header");
        goto done;
    }
    values = PyDict_New();
    if (!values)
        goto done;
    const char *head = raw.buf;
    for (Py_ssize_t at = 0; at < end; at += CARD) {
        const char *card = head + at;
        const char *key, *key_end, *field;
        if (memcmp(card, "HIERARCH ", 9) == 0) {
            const char *eq = memchr(card + 9, '=', CARD - 9);
            if (eq == NULL)
                continue;
            key = card + 9;
            while (key < eq && *key == ' ')
                ++key;
            key_end = eq;
            while (key_end > key && key_end[-1] == ' ')
                --key_end;
            field = eq + 1;
        } else {
            if (card[8] != '=' || card[9] != ' ')
                continue;
            /* bytes.strip(): spaces and ASCII whitespace either side */
            key = card;
            key_end = card + 8;
            while (key < key_end && strchr(" \t\n\r\x0b\x0c", *key) && *key)
                ++key;
            while (key_end > key && strchr(" \t\n\r\x0b\x0c", key_end[-1]) && key_end[-1])
                --key_end;
            field = card + 10;
        }
        PyObject *key_bytes = PyBytes_FromStringAndSize(key, key_end - key);
        if (!key_bytes)
            goto fail;
        PyObject *name = PyDict_GetItemWithError(want, key_bytes); /* borrowed */
        Py_DECREF(key_bytes);
        if (name == NULL) {
            if (PyErr_Occurred())
                goto fail;
            continue;
        }
        int known = PyDict_Contains(values, name);
        if (known < 0)
            goto fail;
        if (known)
            continue; /* the first card of a keyword with a value wins */
        int handed_over;
        Py_ssize_t field_len = card + CARD - field;
        PyObject *value = card_value(field, field_len, &handed_over);
        if (value == NULL) {
            if (!handed_over)
                goto fail;
            PyObject *text = PyUnicode_DecodeASCII(field, field_len, "replace");
            if (!text)
                goto fail;
            value = PyObject_CallOneArg(parse_value, text);
            Py_DECREF(text);
            if (!value)
                goto fail;
        }
        if (value != Py_None && PyDict_SetItem(values, name, value) < 0) {
            Py_DECREF(value);
            goto fail;
        }
        Py_DECREF(value);
    }
    goto done;
fail:
    Py_CLEAR(values);
done:
    PyBuffer_Release(&raw);
    return values;
}

/* ---------------------------------------------------------------------------------------------------- */

static PyObject *folder_entries(PyObject *self, PyObject *args)
{
    PyObject *path;
    int follow;
    if (!PyArg_ParseTuple(args, "O&p", PyUnicode_FSConverter, &path, &follow))
        return NULL;
    DIR *dir;
    Py_BEGIN_ALLOW_THREADS
    dir = opendir(PyBytes_AS_STRING(path));
    Py_END_ALLOW_THREADS
    if (!dir) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(path);
        return NULL;
    }
    int fd = dirfd(dir);
    PyObject *out = PyList_New(0);
    struct dirent *entry;
    while (out) {
        errno = 0;
        entry = readdir(dir);
        if (!entry) {
            if (errno) {
                PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
                Py_CLEAR(out);
            }
            break;
        }
        const char *name = entry->d_name;
        if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0)))
            continue;
        struct stat st;
        int found = fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        int is_link = found && S_ISLNK(st.st_mode);
        if (is_link && follow)
            found = fstatat(fd, name, &st, 0) == 0;
        PyObject *item;
        if (found)
            item = Py_BuildValue("(NNNLL)", PyUnicode_DecodeFSDefault(name), PyBool_FromLong(S_ISDIR(st.st_mode)),
                                 PyBool_FromLong(is_link), (long long)st.st_size,
                                 (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
        else
            item = Py_BuildValue("(NOOOO)", PyUnicode_DecodeFSDefault(name), Py_False, is_link ? Py_True : Py_False,
                                 Py_None, Py_None);
        if (!item || PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_XDECREF(item);
    }
    closedir(dir);
    Py_DECREF(path);
    return out;
}

typedef struct {
    char **items;
    size_t count, capacity;
} Strings;

static int strings_push(Strings *list, char *item)
{
    if (!item)
        return -1;
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 64;
        char **items = realloc(list->items, capacity * sizeof(char *));
        if (!items) {
            free(item);
            return -1;
        }
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->count++] = item;
    return 0;
}

static char *joined(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *out = malloc(la + lb + 2);
    if (out) {
        memcpy(out, a, la);
        out[la] = '/';
        memcpy(out + la + 1, b, lb + 1);
    }
    return out;
}

static int ends_with_any(const char *name, char **suffixes, size_t count)
{
    size_t length = strlen(name);
    for (size_t i = 0; i < count; i++) {
        size_t ls = strlen(suffixes[i]);
        if (ls > length)
            continue;
        const char *tail = name + length - ls;
        size_t j = 0;
        while (j < ls) {
            char c = tail[j];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (c != suffixes[i][j])
                break;
            j++;
        }
        if (j == ls)
            return 1;
    }
    return 0;
}

/* CRC-32 and Adler-32 as zlib computes them (zlib.crc32 and zlib.adler32 of the same bytes) */
static uint32_t crc_table[256];

static void make_crc_table(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_of(const unsigned char *data, size_t length)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < length; i++)
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t adler32_of(const unsigned char *data, size_t length)
{
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < length; i++) {
        a = (a + data[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

typedef struct {
    uint64_t crc, adler, count;
} Digest;

/* The walk itself, without the interpreter: folders (absolute, relative) and each one's digest; -1 out of
 * memory. */
static int walk(Strings *absolute, Strings *relative, Digest **digests, char **suffixes, size_t n_suffixes)
{
    size_t capacity = 0;
    char *entry_bytes = NULL;
    size_t entry_capacity = 0;
    for (size_t at = 0; at < absolute->count; at++) {
        if (at >= capacity) {
            size_t more = capacity ? capacity * 2 : 256;
            Digest *grown = realloc(*digests, more * sizeof(Digest));
            if (!grown)
                goto out_of_memory;
            memset(grown + capacity, 0, (more - capacity) * sizeof(Digest));
            *digests = grown;
            capacity = more;
        }
        DIR *dir = opendir(absolute->items[at]);
        if (!dir)
            continue;
        int fd = dirfd(dir);
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            const char *name = entry->d_name;
            if (name[0] == '.')
                continue;
            struct stat st;
            if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue;
            int is_link = S_ISLNK(st.st_mode);
            if (is_link && fstatat(fd, name, &st, 0) != 0)
                continue;  /* a broken link */
            if (S_ISDIR(st.st_mode)) {
                if (is_link)
                    continue;  /* a linked folder is not entered */
                if (strings_push(absolute, joined(absolute->items[at], name)) < 0 ||
                    strings_push(relative, joined(relative->items[at], name)) < 0) {
                    closedir(dir);
                    goto out_of_memory;
                }
                continue;
            }
            if (!ends_with_any(name, suffixes, n_suffixes))
                continue;
            size_t need = strlen(relative->items[at]) + strlen(name) + 64;
            if (need > entry_capacity) {
                char *grown = realloc(entry_bytes, need);
                if (!grown) {
                    closedir(dir);
                    goto out_of_memory;
                }
                entry_bytes = grown;
                entry_capacity = need;
            }
            int length = snprintf(entry_bytes, entry_capacity, "%s/%s%c%lld%c%lld", relative->items[at], name, 0,
                                  (long long)st.st_size, 0,
                                  (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
            Digest *digest = &(*digests)[at];
            digest->crc += crc32_of((const unsigned char *)entry_bytes, (size_t)length);
            digest->adler += adler32_of((const unsigned char *)entry_bytes, (size_t)length);
            digest->count += 1;
        }
        closedir(dir);
    }
    free(entry_bytes);
    return 0;
out_of_memory:
    free(entry_bytes);
    return -1;
}

static PyObject *digests_below(PyObject *self, PyObject *args)
{
    PyObject *root, *rel, *suffix_tuple;
    if (!PyArg_ParseTuple(args, "O&O&O!", PyUnicode_FSConverter, &root, PyUnicode_FSConverter, &rel,
                          &PyTuple_Type, &suffix_tuple))
        return NULL;
    PyObject *out = NULL;
    Strings absolute = {0}, relative = {0};
    Digest *digests = NULL;
    size_t n_suffixes = (size_t)PyTuple_GET_SIZE(suffix_tuple);
    char **suffixes = calloc(n_suffixes ? n_suffixes : 1, sizeof(char *));
    if (!suffixes) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t i = 0; i < n_suffixes; i++) {
        PyObject *item = PyTuple_GET_ITEM(suffix_tuple, (Py_ssize_t)i);
        if (!PyBytes_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "suffixes must be bytes");
            goto done;
        }
        suffixes[i] = PyBytes_AS_STRING(item);
    }
    if (strings_push(&absolute, strdup(PyBytes_AS_STRING(root))) < 0 ||
        strings_push(&relative, strdup(PyBytes_AS_STRING(rel))) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = walk(&absolute, &relative, &digests, suffixes, n_suffixes);
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyDict_New();
    for (size_t at = 0; out && at < relative.count; at++) {
        if (digests[at].count == 0)
            continue;
        unsigned char packed[24];
        uint64_t parts[3] = {digests[at].crc, digests[at].adler, digests[at].count};
        for (int p = 0; p < 3; p++)
            for (int b = 0; b < 8; b++)
                packed[p * 8 + b] = (unsigned char)(parts[p] >> (8 * b));  /* little-endian */
        PyObject *key = PyUnicode_DecodeFSDefault(relative.items[at]);
        PyObject *value = key ? PyBytes_FromStringAndSize((const char *)packed, 24) : NULL;
        if (!value || PyDict_SetItem(out, key, value) < 0)
            Py_CLEAR(out);
        Py_XDECREF(key);
        Py_XDECREF(value);
    }
done:
    free(digests);
    for (size_t i = 0; i < absolute.count; i++)
        free(absolute.items[i]);
    for (size_t i = 0; i < relative.count; i++)
        free(relative.items[i]);
    free(absolute.items);
    free(relative.items);
    free(suffixes);
    Py_DECREF(root);
    Py_DECREF(rel);
    return out;
}

static PyMethodDef methods[] = {
    {"lzw_decompress", lzw_decompress, METH_O, "Unix compress (.Z) data decompressed."},
    {"wanted_cards", wanted_cards, METH_VARARGS, "The values of the wanted cards of a FITS header."},
    {"folder_entries", folder_entries, METH_VARARGS, "(name, is a folder, is a link, size, mtime_ns) of each entry."},
    {"digests_below", digests_below, METH_VARARGS, "folder -> the digest of its files with these suffixes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void)
{
    make_crc_table();
    return PyModule_Create(&module);
}
