/* Shared between the IMAP parser's files: the token reader.  Not part of
 * the public interface. */
#ifndef POCHTA_IMAP_IMAP_PARSE_INT_H
#define POCHTA_IMAP_IMAP_PARSE_INT_H

#include "imap/imap_parse.h"

/* Nesting bound regardless of configuration: each level is one small
 * stack frame of the recursive SEARCH parser. */
#define IMAP_DEPTH_HARD_MAX 1000

struct ip {
    const char *b;
    size_t len, pos;
    const struct imap_limits *lim;
    unsigned flags;
    struct imap_arena *a;
    unsigned steps, depth;
    const char *err, *code;
    const struct imap_extlit *ext;  /* diverted literals, ascending offset */
    size_t next;
    bool ext_ok;                    /* reading an APPEND message */
    const struct imap_extlit *last_ext; /* set by ip_literal for a diverted one */
};

/* All token readers return 0, or -1 with p->err set (first error wins). */
int ip_fail(struct ip *p, const char *text);
int ip_fail_code(struct ip *p, const char *code, const char *text);
int ip_step(struct ip *p);
void *ip_alloc(struct ip *p, size_t n);

bool ip_atom_char(unsigned char c);
bool ip_peek(const struct ip *p, char c);
bool ip_eol(const struct ip *p);
int ip_sp(struct ip *p);
int ip_char(struct ip *p, char c, const char *what);
int ip_atom(struct ip *p, struct imap_str *out);
/* Consume the atom at p if it equals kw (case-insensitive), else leave p. */
bool ip_kw(struct ip *p, const char *kw);
bool ip_str_eq(const struct imap_str *s, const char *kw);
int ip_astring(struct ip *p, struct imap_str *out);
int ip_string(struct ip *p, struct imap_str *out);
/* A diverted literal (p->ext) is taken only when p->ext_ok: out->data NULL,
 * out->len its size, p->last_ext its entry. */
int ip_literal(struct ip *p, struct imap_str *out, bool allow_binary, bool *binary);
int ip_number(struct ip *p, uint32_t *out);
int ip_nz_number(struct ip *p, uint32_t *out);
int ip_number64(struct ip *p, uint64_t *out);
int ip_seqset(struct ip *p, struct imap_seqset *out);
int ip_flag(struct ip *p, struct imap_str *out);
int ip_date(struct ip *p, time_t *out);

/* Growable array in the arena (doubling; the old copy is abandoned). */
struct ip_vec {
    void *v;
    size_t n, cap;
};
void *ip_vec_push(struct ip *p, struct ip_vec *vec, size_t elsz);

/* SEARCH program: [CHARSET astring SP] keys (charset_required: SORT and
 * THREAD, where the charset comes first without the word CHARSET). */
int ip_search_program(struct ip *p, struct imap_search_args *out, bool charset_required);
int ip_search_return(struct ip *p, struct imap_search_args *out);

#endif
