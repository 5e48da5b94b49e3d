/*
 * reference_int.h: `tlsfront --list-end-reasons` (hidden): the access log reference that
 * docs/operations.md carries, printed from the code's own tables. Used by main.c only.
 */
#ifndef TF_REFERENCE_INT_H
#define TF_REFERENCE_INT_H

/* Print the access log's fields and end= reasons as Markdown tables to stdout. Returns 0. */
int tf_cmd_reference(void);

#endif
