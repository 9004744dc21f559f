"""The labelled condition data set (the project's own) and the script that writes it."""
