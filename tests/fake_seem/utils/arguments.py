def load_opt_from_config_files(conf_files):
    for path in conf_files:
        with open(path, encoding='utf-8'):  # a missing config fails as in SEEM
            pass
    return dict(conf_files=list(conf_files))
