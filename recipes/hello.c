#include <stdio.h>

int
main (void)
{
  puts ("Hello from a static binary built by nsbuild.");
  return 0;
}
