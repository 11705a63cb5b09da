setpriv: failed to execute -c: No such file or directory
