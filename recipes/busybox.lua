-- A busybox image from Debian's busybox-static package.
--
--   nsbuild recipes/busybox.lua
--   nsbuild run busybox -- sh -c 'echo $$; hostname; ls /'

return from(deb "busybox-static")
  -- The package ships only /bin/busybox; this links every applet, /bin/sh included.
  :run { "/bin/busybox", "--install", "-s", "/bin" }
  :cmd { "/bin/sh" }
  :tag "busybox"
