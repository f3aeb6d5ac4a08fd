/* SPDX-License-Identifier: MIT */
/* syscall_probe OUT NAME|NUMBER [ARG...]: make one raw syscall with up to six
   integer arguments and write "RESULT ERRNO\n" to the file OUT (ERRNO is 0 on
   success).  The seccomp specs compile it to see what a filter returns. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <seccomp.h>

int
main (int argc, char **argv)
{
  long args[6] = { 0 }, result;
  pid_t self = getpid ();
  int nr, err, i;
  FILE *out;

  if (argc < 3 || argc > 9)
    {
      fprintf (stderr, "usage: syscall_probe OUT NAME|NUMBER [ARG...]\n");
      return 2;
    }
  nr = argv[2][0] >= '0' && argv[2][0] <= '9' ? atoi (argv[2])
                                              : seccomp_syscall_resolve_name (argv[2]);
  if (nr == __NR_SCMP_ERROR)
    {
      fprintf (stderr, "syscall_probe: unknown syscall '%s'\n", argv[2]);
      return 2;
    }
  for (i = 3; i < argc; i++)
    args[i - 3] = strtol (argv[i], NULL, 0);

  errno = 0;
  result = syscall (nr, args[0], args[1], args[2], args[3], args[4], args[5]);
  err = result < 0 ? errno : 0;

  /* A clone or fork that the filter let through: the child only exits, and
     the parent reaps it before reporting. */
  if (getpid () != self)
    _exit (0);
  while (waitpid (-1, NULL, __WALL) > 0)
    ;

  out = fopen (argv[1], "w");
  if (out == NULL)
    {
      perror (argv[1]);
      return 2;
    }
  fprintf (out, "%ld %d\n", result, err);
  return fclose (out) == 0 ? 0 : 2;
}
