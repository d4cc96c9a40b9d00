-- Tool rows written before runs existed hold "tool_name: <raw tool output>", which the
-- JellyChat clients would show to users as it is. The server calls this once per start
-- with each registered tool's tool_start sentence: such a row gets the sentence as its
-- content and keeps the raw output in tool_call.result (marked legacy), so it is
-- converted once and nothing is lost. Rows of the original JellyChat already hold
-- sentences and match no tool name. Returns how many rows changed. Idempotent.
create or replace function public.jelly_convert_tool_rows(p_sentences jsonb)
returns integer
language plpgsql
set search_path = ''
as $$
declare
    v_count integer;
begin
    update public.chat_messages m
    set content = s.value #>> '{}',
        tool_call = jsonb_build_object('tool', s.key, 'result',
                                       substr(m.content, length(s.key) + 3), 'legacy', true)
    from jsonb_each(coalesce(p_sentences, '{}'::jsonb)) s
    where m.type = 'tool' and m.tool_call is null and m.run_id is null
      and left(m.content, length(s.key) + 2) = s.key || ': ';
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

select public.jelly_server_only(array['public.jelly_convert_tool_rows(jsonb)']);

notify pgrst, 'reload schema';
