# A short demonstration of mirai: parallel evaluation on local daemons.
library(mirai)

cat("Starting 2 local daemons...\n")
daemons(2)
print(status())

cat("\nOne async task (returns at once, resolves in the background):\n")
m <- mirai({
  Sys.sleep(0.5)
  sprintf("computed %s on daemon pid %d", format(x), Sys.getpid())
}, x = pi)
print(m)
print(m[])

cat("\nA parallel map over 8 elements, each sleeping 0.5 s:\n")
t0 <- Sys.time()
res <- mirai_map(1:8, function(i) { Sys.sleep(0.5); i^2 })[.flat]
print(res)
cat(sprintf("took %.1f s on 2 daemons (8 x 0.5 s = 4 s sequentially)\n",
            as.numeric(difftime(Sys.time(), t0, units = "secs"))))

cat("\nErrors come back as values:\n")
print(mirai(stop("something went wrong"))[])

daemons(0)
cat("\nDaemons reset; demo done.\n")
