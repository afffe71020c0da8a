//! gwsteer: with `CNI_COMMAND` set a chained CNI plugin, otherwise the
//! operator CLI.

fn main() {
    let code = match std::env::var("CNI_COMMAND") {
        Ok(cmd) if !cmd.is_empty() => gwsteer::entry::cni(&cmd),
        _ => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            gwsteer::cli::run(&args)
        }
    };
    std::process::exit(code);
}
