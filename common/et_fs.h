/*
 * et_fs — small file-system helpers shared by the CLI and the workers.
 */
#ifndef ET_FS_H
#define ET_FS_H

/* mkdir -p: create dir and every missing parent (mode 0777 before umask).
 * 0, or -1 with errno set. */
int et_mkdirs(const char *dir);

/* mkdir -p of the directory part of path ("a/b/c.yaml" makes "a/b"). */
int et_mkdirs_parent(const char *path);

#endif
