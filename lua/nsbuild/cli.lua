local M = {}
function M.main(args) print("nsbuild", #args) return 0 end
return M
