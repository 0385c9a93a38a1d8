//! A model's chat template (Jinja, from its `tokenizer_config.json`), rendered as transformers'
//! `apply_chat_template` does: `messages`, `add_generation_prompt`, the special tokens, and
//! Python's string methods (minijinja's pycompat), `raise_exception` and `strftime_now`.

use serde::Serialize;

#[cfg(not(target_arch = "wasm32"))]
pub use template::ChatTemplate;

/// In the browser no model folder is read, so there is no template: an empty type keeps the
/// callers free of `cfg`s.
#[cfg(target_arch = "wasm32")]
#[derive(Debug)]
pub enum ChatTemplate {}

#[cfg(target_arch = "wasm32")]
impl ChatTemplate {
    pub fn split(
        &self,
        _: &[Message],
        _: &[Message],
    ) -> std::result::Result<(String, String), String> {
        match *self {}
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[cfg(not(target_arch = "wasm32"))]
mod template {
    use minijinja::{context, Environment, Error as JinjaError, ErrorKind};

    use super::Message;
    use crate::error::{Error, Result};

    /// A compiled chat template and the special tokens it may print.
    pub struct ChatTemplate {
        environment: Environment<'static>,
        bos_token: String,
        eos_token: String,
    }

    impl std::fmt::Debug for ChatTemplate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ChatTemplate")
        }
    }

    const NAME: &str = "chat_template";

    impl ChatTemplate {
        /// Compiles `source`; `origin` names where it came from in errors.
        pub fn new(source: &str, bos_token: &str, eos_token: &str, origin: &str) -> Result<Self> {
            let mut environment = Environment::new();
            minijinja_contrib::add_to_environment(&mut environment);
            environment
                .set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
            environment.add_function(
                "raise_exception",
                |message: String| -> std::result::Result<String, JinjaError> {
                    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
                },
            );
            environment.add_function("strftime_now", |format: String| {
                // Templates print today's date; a fixed one keeps renders reproducible.
                format
                    .replace("%d", "26")
                    .replace("%b", "Jul")
                    .replace("%B", "July")
                    .replace("%Y", "2024")
                    .replace("%m", "07")
            });
            environment
                .add_template_owned(NAME, source.to_string())
                .map_err(|e| {
                    Error::format(origin, format!("chat_template does not compile: {e}"))
                })?;
            Ok(Self {
                environment,
                bos_token: bos_token.to_string(),
                eos_token: eos_token.to_string(),
            })
        }

        /// The conversation as the model was trained to read it; with `add_generation_prompt`, it
        /// ends where the assistant's reply begins.
        pub fn render(
            &self,
            messages: &[Message],
            add_generation_prompt: bool,
        ) -> std::result::Result<String, String> {
            let template = self.environment.get_template(NAME).expect("added in new");
            template
                .render(context! {
                    messages => messages,
                    add_generation_prompt => add_generation_prompt,
                    bos_token => &self.bos_token,
                    eos_token => &self.eos_token,
                })
                .map_err(|e| format!("the chat template failed to render: {e}"))
        }

        /// (prompt, completion) as TRL renders a conversational pair: the prompt with the generation
        /// prompt, the completion as what the whole conversation adds after it.
        pub fn split(
            &self,
            prompt: &[Message],
            completion: &[Message],
        ) -> std::result::Result<(String, String), String> {
            let prompt_text = self.render(prompt, true)?;
            let whole: Vec<Message> = prompt.iter().chain(completion).cloned().collect();
            let whole_text = self.render(&whole, false)?;
            match whole_text.strip_prefix(&prompt_text) {
                Some(rest) if !rest.is_empty() => Ok((prompt_text, rest.to_string())),
                _ => Err(format!(
                "the chat template renders the prompt differently inside the whole conversation \
                 (prompt {prompt_text:?}, conversation {whole_text:?})"
            )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    fn message(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn pairs_split_at_the_generation_prompt() {
        let template = ChatTemplate::new(CHATML, "<s>", "</s>", "t").unwrap();
        let (prompt, completion) = template
            .split(&[message("user", "Hi")], &[message("assistant", "Hello ")])
            .unwrap();
        assert_eq!(
            prompt,
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(completion, "Hello<|im_end|>\n");
    }

    #[test]
    fn python_string_methods_and_raised_errors_work() {
        let source = "{% if messages[0]['content'].startswith('x') %}{{ raise_exception('no x') }}{% endif %}{{ messages[0]['content'].upper() }}";
        let template = ChatTemplate::new(source, "", "", "t").unwrap();
        assert_eq!(
            template.render(&[message("user", "abc")], false).unwrap(),
            "ABC"
        );
        let message_text = template
            .render(&[message("user", "xyz")], false)
            .unwrap_err();
        assert!(message_text.contains("no x"), "{message_text}");
        let error = ChatTemplate::new("{% if %}", "", "", "m/tokenizer_config.json")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("m/tokenizer_config.json") && error.contains("chat_template"),
            "{error}"
        );
    }
}
