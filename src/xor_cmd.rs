#[derive(clap::Args, Debug)]
pub struct XorArgs {}
pub fn command(_a: &XorArgs) -> anyhow::Result<()> { anyhow::bail!("not yet") }
